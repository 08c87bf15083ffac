from ser_fast.reproduce.builtin import main

main()
