"""The hand-crafted feature pipeline of the two-phase baselines: media → feature sequences.

=============  =================================================================================
module         holds
=============  =================================================================================
extractors     the fixed extractors: openSMILE audio descriptors, face geometry + landmarks + HOG,
               static text vectors
features       `FeatureSettings`, the feature store (a cache of its own), `extract_features`
importers      readers of pre-extracted CMU-MOSEI features (``.csd`` files, MulT/MMSA pickles)
dataset        `FeatureDataset` + `collate_features` → padded (B, T, D) batches with masks
=============  =================================================================================

It reuses the end-to-end pipeline's decoders (`mesm.data.media`) and cache machinery; the
end-to-end pipeline never imports it.
"""
