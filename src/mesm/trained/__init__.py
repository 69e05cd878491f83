"""A trained model as a file and as it runs: the checkpoint format (:mod:`.checkpoint`: one
``.safetensors`` file or a Hugging Face-style folder, loaded without unpickling, with its weight
digest checked), the numeric precision it trains and runs at (:mod:`.precision`) and the
inputs it reads from a Batch (:mod:`.inputs`).

This layer sits above models and data and below inference and training: training writes
checkpoints and inference reads them, with the same code, and every command resolves its
precision here once.
"""
