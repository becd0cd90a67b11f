"""Checks of the deployment artefacts: the Helm chart (with a real helm), the Dockerfile, the Grafana dashboard."""
