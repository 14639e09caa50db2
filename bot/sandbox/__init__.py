"""The local GitHub double (`hubbot sandbox`) and the Kubernetes API double."""
