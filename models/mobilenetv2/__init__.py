"""ImageNet-pretrained MobileNetV2 fine-tuned on CIFAR-10 with TensorFlow/Keras."""

import os

# Importing any module of this package runs this first, before TensorFlow is loaded: keep its
# C++ INFO banner (oneDNN, CPU features) off the console.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
