"""`mesm demo` and the media it is made of: :mod:`.pipeline` runs the whole pipeline on a
synthetic corpus, :mod:`.corpus` writes that corpus (drawn faces, speech-like audio, transcripts;
no single modality suffices) and its long video, and :mod:`.synthetic` the plain synthetic clips,
frames and datasets the tests and benchmarks build on the fly.

Nothing in the library imports this package except the command line.
"""
