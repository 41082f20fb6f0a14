"""medgo: Kubernetes-native MLOps for the MedGo Chinese medical LLM recipe."""

__version__ = "0.1.0"
