# The cheapest keras.applications model to build and trace at 32x32 pixels
# (13 convolutions; MobileNetV3Small takes several times longer to trace).
TINY_APPLICATION = ["--model", "VGG16", "--weights", "none", "--image-size", "32"]
