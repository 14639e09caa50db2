"""`hubbot register`: create hubbot's GitHub App from its manifest (`app.yaml`), as Probot does.

`manifest` reads and fills the manifest, `credentials` writes what GitHub hands back,
`exchange` trades the one-time code for it, `web` serves the local page and the callback,
and `main` runs the whole flow from the command line.
"""
