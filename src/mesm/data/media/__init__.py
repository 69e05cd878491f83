"""The end-to-end pipeline: media files → feature cache → batches for FE2E and MESM.

=============  =================================================================================
module         holds
=============  =================================================================================
video          frames sampled every N ms by real timestamps (video files and frame folders)
audio          waveform loading and resampling, the paper's mel-spectrogram, mel chunks
faces          MTCNN face crops with a counted centre-crop fallback; the paper's normalisation
text           transcripts → token ids with the text encoder's own tokenizer
utterance      one utterance → the tensors of its cache entry (`compute_features`, `build_entry`)
cache          the feature cache: settings key, entries, checksums, source fingerprints, lock
preprocess     `preprocess_dataset`: fill the cache once, in parallel, resumably
dataset        `EmotionDataset` + `collate` → `Batch`
stream         many segments of one long video decoded in a single pass (timeline prediction)
segments       utterance spans of a long video from subtitles or voice activity
vad            voice-activity probabilities (Silero VAD)
transcribe     speech recognition for segments without a transcript
=============  =================================================================================
"""
