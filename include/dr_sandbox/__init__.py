"""Local stand-ins for the DR bundle's outside world: AWS emulator, DNS, Kubernetes API, regional apps."""
