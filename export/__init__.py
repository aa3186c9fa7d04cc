"""dqnkit.export: TorchScript, ONNX and torch.export artifacts, and a torch-free runtime."""
