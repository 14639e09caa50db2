"""The GitHub side: app auth, client, snapshot reader, comments, check runs, deployments."""
