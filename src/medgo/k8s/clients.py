"""Kubernetes API clients for medgo's launchers: in-cluster credentials in a pod, kubeconfig elsewhere."""

from __future__ import annotations

from dataclasses import dataclass

from medgo.errors import MedgoError


@dataclass(frozen=True)
class KubernetesClients:
    custom: object  # kubernetes.client.CustomObjectsApi
    core: object  # kubernetes.client.CoreV1Api


def kubernetes_clients() -> KubernetesClients:
    """Clients for the cluster this process can reach; a clear error when it can reach none."""
    from kubernetes import client
    from kubernetes import config as kube_config

    try:
        kube_config.load_incluster_config()
    except kube_config.ConfigException:
        try:
            kube_config.load_kube_config()
        except (kube_config.ConfigException, FileNotFoundError, OSError) as exc:
            raise MedgoError(
                f"no Kubernetes cluster reachable: not in a pod and no usable kubeconfig ({exc})"
            ) from None
    return KubernetesClients(custom=client.CustomObjectsApi(), core=client.CoreV1Api())
