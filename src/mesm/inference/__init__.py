"""Using a trained model: checkpoints and model folders, inputs, prediction, evaluation.

This layer sits above models, data and evaluation and below training and analysis; it never
imports Lightning, so predicting on one clip loads only what prediction needs.
"""
