"""hubbot: GitOps for JupyterHub infrastructure repositories, as a GitHub App."""

__version__ = "0.1.0"
