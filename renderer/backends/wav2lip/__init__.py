"""The neural backend: a user-supplied Wav2Lip-contract ONNX model (see docs/neural.md).

backend: the Backend (crop, paste mask, paste-back); engine: one batched ONNX Runtime session
per model and process; batching: the loop that batches frames across streams; mel: Wav2Lip's
exact mel; graph: the ONNX graph from a table of the architecture; model_cli: `atlas model`.
Nothing is imported here, so loading one module does not pull in the others.
"""
