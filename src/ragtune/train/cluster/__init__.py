"""Multi-node training on Kubernetes: a Kubeflow Training Operator PyTorchJob built, run and staged."""
