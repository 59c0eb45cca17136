"""Export of detkit detectors: ONNX (post-processing inside the graph) and TorchScript.

:mod:`detkit.export.onnx_ops` holds the ONNX translations of detkit's compiled ops.
"""
