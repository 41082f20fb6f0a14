"""Kubernetes integration: PyTorchJob training launches and KServe InferenceService deployment.

* :mod:`medgo.k8s.names` -- the names of medgo's cluster objects (PVCs, Secret, service accounts, …).
* :mod:`medgo.k8s.pytorchjob` -- :func:`~medgo.k8s.pytorchjob.build_pytorchjob` and the launcher.
* :mod:`medgo.k8s.inference_service` -- :func:`~medgo.k8s.inference_service.build_inference_service`
  and the canary deployer.

Builders return plain dicts (validated against the published CRD schemas in the tests); the launcher and
deployer take ``kubernetes.client`` API objects so that callers choose how to authenticate
(``config.load_incluster_config()`` inside a pipeline pod, a kubeconfig on a laptop). Submodules are
imported on use, so reading a name does not load the Kubernetes client.
"""
