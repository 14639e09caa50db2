"""`hubbot demo`: the life of a change on the embedded example, against the local GitHub double."""
