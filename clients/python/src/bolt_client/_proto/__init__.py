"""Generated gRPC stubs for bolt.v1 (built from proto/ by setup.py; private)."""
