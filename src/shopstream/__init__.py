"""ShopStream: real-time analytics for e-commerce events."""

__version__ = "0.1.0"
