"""Kopf operator for CameraSubscription resources (Step 4). Installed as ``detector_operator``."""
