"""The Atlas API v8.0 service: offline jobs (this package) and, elsewhere, realtime sessions."""
