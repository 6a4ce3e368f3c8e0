"""ExampleGen for CIFAR-10 in any of its three on-disk forms (see components/cifar_format.py)."""
