"""Train a small MLP on the 8x8 handwritten digits shipped with nkeras."""

import nkeras as keras
from nkeras import layers

keras.utils.set_random_seed(0)
(x_train, y_train), (x_test, y_test) = keras.datasets.digits.load_data()
x_train, x_test = x_train.astype("float32") / 16.0, x_test.astype("float32") / 16.0

model = keras.Sequential([
    keras.Input(shape=(8, 8)),
    layers.Flatten(),
    layers.Dense(64, activation="relu"),
    layers.Dropout(0.1),
    layers.Dense(10, activation="softmax"),
])
model.summary()
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
model.fit(x_train, y_train, batch_size=32, epochs=30, validation_split=0.1, verbose=2)
loss, accuracy = model.evaluate(x_test, y_test, verbose=0)
print(f"test loss {loss:.4f}, test accuracy {accuracy:.4f}")
print("predicted:", model.predict(x_test[:10], verbose=0).argmax(axis=1), "true:", y_test[:10])
