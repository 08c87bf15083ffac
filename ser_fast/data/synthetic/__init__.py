"""A synthetic emotional-speech corpus, so that ser_fast runs end to end without licensed data.

``synthesize_corpus(out_dir)`` writes real 16-bit wav files made by a small source-filter speech
synthesizer (glottal pulses through formant filters, with emotion- and speaker-dependent prosody and
voice quality) in the IEMOCAP layout or as a manifest, through one of several recording channels.
"""

from ser_fast.data.synthetic.babble import babble_talkers
from ser_fast.data.synthetic.channel import CONDITIONS
from ser_fast.data.synthetic.corpus_writer import synthesize_corpus
from ser_fast.data.synthetic.layouts import LAYOUTS
from ser_fast.data.synthetic.prosody import EMOTIONS

__all__ = ["CONDITIONS", "EMOTIONS", "LAYOUTS", "babble_talkers", "synthesize_corpus"]
