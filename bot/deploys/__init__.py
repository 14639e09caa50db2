"""Deploys: rollout schedule and driver, claims, executors and reporters."""
