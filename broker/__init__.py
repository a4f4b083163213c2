"""Connection broker: backend WebSocket, subscription reconcile, event routing (Step 3)."""
