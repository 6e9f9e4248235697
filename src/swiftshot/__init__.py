"""swiftshot: a latency-first, self-hosted image service for ecommerce product imagery."""

__version__ = "0.1.0"
