"""Names of weights files that users supply themselves (they cannot be downloaded here, or their
licence keeps them out of the package). Light on purpose: the CLI's help quotes them."""

INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"  # FID's TensorFlow-compatible Inception
VGG16_FILE = "vgg16-397923af.pth"  # torchvision's ImageNet VGG16, as the torch hub cache names it
LPIPS_ALEXNET_FILE = "alexnet-owt-7be5be79.pth"  # torchvision's AlexNet, LPIPS's backbone
