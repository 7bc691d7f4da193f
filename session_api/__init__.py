"""The Atlas API v8.0 service: offline jobs and realtime sessions (LiveKit rooms, agent dispatch,
face swaps, ending and billing). The live rendering itself runs in the `agent` worker."""
