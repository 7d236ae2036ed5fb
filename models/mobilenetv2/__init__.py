"""ImageNet-pretrained MobileNetV2 fine-tuned on CIFAR-10 with TensorFlow/Keras (served through LiteRT)."""
