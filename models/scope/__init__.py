"""Out of scope: is an image one of the 10 CIFAR-10 classes at all? A gate beside the classifiers.

The classifiers answer with one of the 10 classes whatever they are shown, and their confidence does not say when
an image is none of them (a portrait comes back "dog" at 80%). The gate reads the same 32x32 view with an
ImageNet-pretrained MobileNetV2 (which has seen people, food and rooms; never fine-tuned here) and a linear
probe fitted to tell CIFAR-10 training images from out-of-scope images of some benchmark families
(`fit.py`); the other families are held out to measure it (`bench/bench_out_of_scope.py`).
"""
