"""A synthetic emotional-speech corpus of real wav files (``synthesize_corpus``, a small source-filter
synthesizer), so that ser_fast runs end to end without licensed data."""

from ser_fast.data.synthetic.babble import babble_talkers
from ser_fast.data.synthetic.channel import CONDITIONS
from ser_fast.data.synthetic.corpus_writer import synthesize_corpus
from ser_fast.data.synthetic.layouts import LAYOUTS
from ser_fast.data.synthetic.prosody import EMOTIONS

__all__ = ["CONDITIONS", "EMOTIONS", "LAYOUTS", "babble_talkers", "synthesize_corpus"]
