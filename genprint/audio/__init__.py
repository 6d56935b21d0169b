"""Audio: the second modality genprint fingerprints (research question 1).

The same mapping network, weight modulation, bundle and registry as images, over a 1-D waveform decoder
(`genprint.generators.wavae`); this package holds what is audio's own: reading and writing sound, the speech corpus,
the waveform reader, the attacks and the quality measures.
"""

RATE = 16000  # samples per second of every waveform genprint handles; files at other rates are resampled on read
AUDIO_SUFFIXES = (".wav", ".flac")
HELD_OUT_SECONDS = 2.0  # what the evaluation and the learning curve read of each held-out clip, by default
