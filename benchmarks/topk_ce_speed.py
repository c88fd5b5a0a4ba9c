"""TopKCrossEntropy forward+backward under XLA on CPU, as a ratio to softmax CE in the same run.

Run: python -m benchmarks.topk_ce_speed   (b=512, n=1000; medians of repeated runs, warm-ups excluded)
"""
import time

import keras
import numpy as np
import tensorflow as tf

from keras_topk.losses import TopKCrossEntropy
b,n=512,1000
rng=np.random.default_rng(0)
x=tf.constant(rng.normal(size=(b,n)).astype("float32")); y=tf.constant(rng.integers(0,n,b))
def mk(loss):
    @tf.function(jit_compile=True)
    def step(x):
        with tf.GradientTape() as t:
            t.watch(x); v=loss(y,x)
        return v, t.gradient(v,x)
    return step
def bench(f, reps=30):
    for _ in range(3): [a.numpy() for a in f(x)]
    ts=[]
    for _ in range(reps):
        t0=time.perf_counter(); r=f(x); r[1].numpy(); ts.append(time.perf_counter()-t0)
    return np.median(ts)*1e3
ce=bench(mk(keras.losses.SparseCategoricalCrossentropy(from_logits=True)))
for name,l in [("split m16",TopKCrossEntropy(m=16)),("bitonic m16",TopKCrossEntropy(method="bitonic",m=16)),("split all",TopKCrossEntropy()),("bitonic all",TopKCrossEntropy(method="bitonic"))]:
    t=bench(mk(l), 10 if "all" in name else 30)
    print(f"{name}: {t:.2f} ms, CE {ce:.3f} ms, ratio {t/ce:.1f}")
