"""A Kubernetes API double: real REST paths for Jobs, Pods, their logs and Leases.

`KubeSandbox` serves them on loopback; its kubelet runs each Job's containers as local
processes. See `sandbox.py` for the steering API and `kubelet.py` for what is simulated.
"""

from bot.sandbox.kube.faults import Faults
from bot.sandbox.kube.sandbox import KubeSandbox

__all__ = ["Faults", "KubeSandbox"]
