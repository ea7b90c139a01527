"""mentor: build MENTOR-style datasets of talking humans, audit them, train on them."""
__version__ = "0.1.0"
