r"""The lectures' claims about their experiments, as ``jaxcnn.claims`` tests them.

Each claim names the ladder output folder its runs are in (under the claims
root, ``workdirs/claims`` by default), the command that trains them (every
rung a population of seeds), the rungs compared and the metric. Speed claims
name a benchmark instead (``benchmarks/bench_rungs.py``: the rungs' train
steps timed side by side; its JSON under the same root). Make the runs,
then the table:

  python -m jaxcnn.ladder --config_file=experiments/mlp_activations.py --seeds=3 \
      --out=workdirs/claims/mlp_activations
  ... (each claim's command)
  python -m jaxcnn.claims --claims_file=experiments/claims/lectures.py --root=workdirs/claims

Metrics: ``loss@1`` is the training loss of epoch 1 (running mean over the
epoch's batches, as Keras logs it): how fast a run starts to learn.
``train_eval_accuracy-val_accuracy`` is the train/validation gap of the last
epoch, the training split scored in evaluation mode (``training.eval_train``).
"""

from jaxcnn.claims import Claim

_ACT = ("python -m jaxcnn.ladder --config_file=experiments/mlp_activations.py --seeds=5 "
        "--out=workdirs/claims/mlp_activations5")
_ACT_SCALE = ("Fashion-MNIST, the first 5,000 training images held out, 300-100 MLP, "
              "SGD 0.01, 10 epochs, 5 seeds")
_OPT = ("python -m jaxcnn.ladder --config_file=experiments/mlp_optimizers.py --seeds=5 "
        "--members=sgd,momentum,nesterov,adagrad,adam,nadam "
        "--out=workdirs/claims/mlp_optimizers5")
_OPT_SCALE = ("Fashion-MNIST, the first 5,000 training images held out, 300-100 MLP "
              "(elu + he_normal), 10 epochs, 5 seeds")
_REG = ("python -m jaxcnn.ladder --config_file=experiments/mlp_regularization.py --seeds=5 "
        "--members=dropout --out=workdirs/claims/mlp_regularization5")
_REG_SCALE = ("Fashion-MNIST, the first 5,000 training images held out, 300-100 MLP, "
              "Nadam, 2 epochs (as the lecture), 5 seeds")
_CNN = ("python -m jaxcnn.ladder --config_file=experiments/mnist_cnns.py --options=fashion_mnist "
        "--seeds=5 --epochs=2 --members=cnn_small,cnn_small_bn "
        "--out=workdirs/claims/mnist_cnns_fashion5")
_CNN_SCALE = "Fashion-MNIST 54,000 / 6,000 / 10,000, Adam, batch 128, 2 epochs, 5 seeds"
_BN1 = " && ".join(
    "python -m jaxcnn.main --config=experiments/mnist_cnns.py:" + arg
    + ",fashion_mnist --config.training.population=5 --config.training.num_epochs=1"
    + extra + " --workdir=workdirs/claims/bn_epoch1/" + out
    for arg, extra, out in (
        ("cnn_small", "", "cnn_small"),
        ("cnn_small_bn", "", "cnn_small_bn"),
        ("cnn_small_bn", " --config.training.recompute_bn_stats=20", "cnn_small_bn_precise")))
_BN1_SCALE = ("Fashion-MNIST 54,000 / 6,000 / 10,000, Adam, batch 128, 1 epoch (421 steps), "
              "5 seeds (the same first epoch as the 2-epoch runs); precise BN: moving "
              "statistics recomputed over 20 training batches")
_SCHED = ("python -m jaxcnn.ladder --config_file=experiments/mlp_schedules.py --seeds=5 "
          "--members=constant,exponential,plateau,1cycle_low,1cycle "
          "--out=workdirs/claims/mlp_schedules5")
_SCHED_SCALE = ("Fashion-MNIST, the first 5,000 training images held out, 300-100 MLP, "
                "SGD lr0 0.01, 20 epochs, 5 seeds")
_LADDER5 = ("python -m jaxcnn.ladder --config_file=experiments/regularization_ladder.py "
            "--options=overfit --seeds=5 --members=dropout_maxnorm,dropout_maxnorm_maxpool,"
            "dropout_maxnorm_strides --out=workdirs/claims/regularization_overfit5")
_LADDER5_SCALE = ("Fashion-MNIST 800 / 200 train / validation, first 1,000 test, cifar_cnn, "
                  "Adam, 8 epochs, 5 seeds")
_NORM5 = ("python -m jaxcnn.ladder --config_file=experiments/regularization_ladder.py "
          "--options=overfit --seeds=5 --members=baseline,normalization "
          "--out=workdirs/claims/regularization_overfit_norm5")
_REG5 = ("python -m jaxcnn.ladder --config_file=experiments/regularization_ladder.py "
         "--options=overfit --seeds=5 --members=normalization,batchnorm,dropout "
         "--out=workdirs/claims/regularization_overfit_reg5")
_LADDER24 = ("python -m jaxcnn.ladder --config_file=experiments/regularization_ladder.py "
             "--options=overfit --seeds=3 --epochs=24 --members=normalization,l2 "
             "--out=workdirs/claims/regularization_overfit24")
_LADDER24_SCALE = ("Fashion-MNIST 800 / 200 train / validation, first 1,000 test, "
                   "cifar_cnn, Adam, 24 epochs (144 steps), 3 seeds")
_POOL_BENCH = ("python benchmarks/bench_rungs.py "
               "--config_file=experiments/regularization_ladder.py --options=overfit "
               "--members=dropout_maxnorm,dropout_maxnorm_maxpool,dropout_maxnorm_strides "
               "--rounds=11 --steps=24 --out=workdirs/claims/bench/pooling.json")
_POOL_BENCH_SCALE = ("the ladder rungs' train steps (single runs: cifar_cnn variants, "
                     "Adam, batch 128 of 28x28x1 Fashion-MNIST), warmed up, then 24 "
                     "steps of each in turn per round, 11 interleaved rounds, one CPU "
                     "device beside other jobs; see BENCHMARKS.md")
_TRANSFER = ("python -m jaxcnn.main --config=experiments/fashion_mnist_pretrain.py "
             "--workdir=workdirs/fashion_mnist_pretrain && python -m jaxcnn.ladder "
             "--config_file=experiments/transfer_digits_ladder.py --seeds=5 "
             "--members=transfer_digits_scratch,transfer_digits_scratch_augment,"
             "transfer_digits_features,transfer_digits_features_augment,"
             "transfer_digits_finetune_augment --out=workdirs/claims/transfer_digits5")
_TRANSFER_SCALE = ("400 scikit-learn digits (offline stand-in for cats vs dogs), 5 seeds "
                   "of the target training on one Fashion-MNIST base (seed 0); the "
                   "cached-features rung trains its 5 heads on one set of features; "
                   "fine-tuning seed i (conv2d_2 and the head, RMSProp 1e-4, 30 epochs) "
                   "continues the frozen-base seed i")
_TRANSFER100 = _TRANSFER.replace("--seeds=5", "--seeds=5 --train_examples=111").replace(
    "transfer_digits5", "transfer_digits100")
_TRANSFER100_SCALE = ("100 scikit-learn digits, 10 a class (--train_examples=111: 11 "
                      "held out for validation), 1,297 test; otherwise as transfer_digits5")
_TOO_EASY = ("at 400 digits the stand-in is too easy: from scratch the small CNN "
             "already scores ~0.96, which leaves little for data expansion or a clothing "
             "base to add (at 100 digits, the rows above, the road shows)")
_DEEP = ("python -m jaxcnn.ladder --config_file=experiments/deep_mlp.py --seeds=5 --epochs=2 "
         "--train_examples=6000 --test_examples=2000 --out=workdirs/claims/deep_mlp5")
_DEEP_SCALE = ("20 x 100-unit MLP, SGD 0.01, first 6,000 Fashion-MNIST training images "
               "(600 validation), 2 epochs, first 2,000 test images, 5 seeds")


def _few_data(ladder: str, command: str, scale: str, why: str = "") -> list[Claim]:
  """Lecture 003's road (its table: 72%, 82% with data expansion, 90% transfer,
  96% transfer with expansion, 97% fine-tuning with expansion) on one ladder."""
  def claim(words, better, worse):
    return Claim("003", words, ladder, command, "better",
                 ("transfer_digits_" + better, "transfer_digits_" + worse),
                 scale=scale, why=why)
  return [
      claim("data expansion helps a network trained from scratch on few data",
            "scratch_augment", "scratch"),
      claim("transfer (a frozen pretrained base, features cached) beats training "
            "from scratch on few data", "features", "scratch"),
      claim("transfer beats training from scratch on few data, both with data "
            "expansion", "features_augment", "scratch_augment"),
      claim("data expansion helps transfer too (frozen base, with vs without)",
            "features_augment", "features"),
      claim("fine-tuning the top of the base, with data expansion, beats feature "
            "extraction with expansion (97% vs 96% in the lecture)",
            "finetune_augment", "features_augment"),
  ]


CLAIMS = [
    # Lecture 004: activations, initialization.
    Claim("004", "activations rank SELU > ELU > leaky ReLU > ReLU > tanh > logistic",
          "mlp_activations5", _ACT, "ranking",
          ("selu", "elu", "leaky_relu", "relu", "tanh", "logistic"), scale=_ACT_SCALE,
          why="two hidden layers: the five non-logistic activations lie within 0.004 "
              "and partly the other way (ELU > SELU, ReLU > leaky ReLU); the ranking "
              "is about depth, where SELU does beat ReLU (the 20-layer rows)"),
    Claim("004", "logistic is the worst activation (here: below tanh)",
          "mlp_activations5", _ACT, "better", ("tanh", "logistic"), scale=_ACT_SCALE),
    Claim("004", "ReLU wants He initialization (He beats Glorot)",
          "mlp_activations5", _ACT, "better", ("relu", "relu_glorot"), scale=_ACT_SCALE),
    # Lecture 004: depth (vanishing gradients), on a 20-layer MLP.
    Claim("004", "Glorot initialization lets a deep tanh network train where sigmoid "
          "with N(0, 1) weights does not", "deep_mlp5", _DEEP, "better",
          ("tanh_glorot", "sigmoid_normal"), scale=_DEEP_SCALE),
    Claim("004", "Glorot initialization fixes the deep logistic (sigmoid) network",
          "deep_mlp5", _DEEP, "better", ("sigmoid_glorot", "sigmoid_normal"),
          scale=_DEEP_SCALE,
          why="Glorot's variance rule assumes slope 1 at 0, sigmoid's is 1/4: at "
              "initialization the kernel gradients shrink ~4x per layer, ~1e-12 over "
              "20 layers (tests/test_diagnostics.py); both stay near chance after 2 "
              "epochs, sigmoid_glorot at it"),
    Claim("004", "He initialization lets a deep ReLU network train where sigmoid with "
          "N(0, 1) weights does not", "deep_mlp5", _DEEP, "better",
          ("relu_he", "sigmoid_normal"), scale=_DEEP_SCALE),
    Claim("004", "SELU (self-normalizing) beats ReLU in a deep dense network",
          "deep_mlp5", _DEEP, "better", ("selu_lecun", "relu_he"), scale=_DEEP_SCALE),
    # Lecture 004: optimizers.
    Claim("004", "momentum optimization goes faster than plain SGD",
          "mlp_optimizers5", _OPT, "better", ("momentum", "sgd"), metric="loss@1",
          higher_is_better=False, scale=_OPT_SCALE,
          why="the lecture's settings give momentum (lr 0.001, beta 0.9) the same "
              "effective step, lr / (1 - beta) = 0.01, as plain SGD's 0.01, and its "
              "velocity takes ~1 / (1 - beta) = 10 steps to build up: it starts a "
              "little slower, not faster"),
    Claim("004", "Nesterov momentum is faster than momentum",
          "mlp_optimizers5", _OPT, "better", ("nesterov", "momentum"), metric="loss@1",
          higher_is_better=False, scale=_OPT_SCALE),
    Claim("004", "adaptive methods (Adam) converge faster than SGD",
          "mlp_optimizers5", _OPT, "better", ("adam", "sgd"), metric="loss@1",
          higher_is_better=False, scale=_OPT_SCALE),
    Claim("004", "AdaGrad slows down too much and stops short of the minimum",
          "mlp_optimizers5", _OPT, "better", ("sgd", "adagrad"), metric="loss",
          higher_is_better=False, scale=_OPT_SCALE),
    Claim("004", "Nadam is often a bit better than Adam",
          "mlp_optimizers5", _OPT, "better", ("nadam", "adam"), scale=_OPT_SCALE),
    # Lecture 004: schedules.
    Claim("004", "1cycle converges fastest (training loss after 20 epochs, vs constant)",
          "mlp_schedules5", _SCHED, "better", ("1cycle_low", "constant"), metric="loss",
          higher_is_better=False, scale=_SCHED_SCALE),
    Claim("004", "1cycle, its peak chosen by the learning-rate range test, beats a "
          "constant rate (test accuracy)", "mlp_schedules5", _SCHED, "better",
          ("1cycle", "constant"), scale=_SCHED_SCALE),
    Claim("004", "exponential decay works well (test accuracy vs constant)",
          "mlp_schedules5", _SCHED, "better", ("exponential", "constant"), scale=_SCHED_SCALE),
    Claim("004", "performance scheduling works well (test accuracy vs constant)",
          "mlp_schedules5", _SCHED, "better", ("plateau", "constant"), scale=_SCHED_SCALE),
    # Lecture 004: MC dropout.
    Claim("004", "MC dropout matches the single pass (0.8568 vs 0.8577 in the lecture)",
          "mlp_regularization5", _REG, "as_good",
          ("dropout:mc_dropout_test_accuracy", "dropout:test_accuracy"), scale=_REG_SCALE),
    # Lecture 002: BatchNorm on the small CNN ("better in training and validation").
    Claim("002", "BatchNorm makes the small CNN learn faster (training accuracy, epoch 1)",
          "mnist_cnns_fashion5", _CNN, "better", ("cnn_small_bn", "cnn_small"),
          metric="accuracy@1", scale=_CNN_SCALE),
    Claim("002", "BatchNorm makes the small CNN better on validation after one epoch",
          "mnist_cnns_fashion5", _CNN, "better", ("cnn_small_bn", "cnn_small"),
          metric="val_accuracy@1", scale=_CNN_SCALE,
          why="evaluation uses the moving statistics (momentum 0.99), which trail the "
              "weights while they change fast; recomputed over 20 training batches "
              "(precise BN) the same epoch-1 weights are ahead (the bn_epoch1 row), and "
              "by epoch 2 the validation accuracy is ahead too"),
    Claim("002", "BatchNorm ahead after one epoch once its moving statistics are "
          "recomputed (precise BN; test accuracy)", "bn_epoch1", _BN1, "better",
          ("cnn_small_bn_precise", "cnn_small"), scale=_BN1_SCALE),
    Claim("002", "BatchNorm makes the small CNN better on validation (epoch 2)",
          "mnist_cnns_fashion5", _CNN, "better", ("cnn_small_bn", "cnn_small"),
          metric="val_accuracy", scale=_CNN_SCALE),
    Claim("002", "BatchNorm improves the small CNN (test accuracy)",
          "mnist_cnns_fashion5", _CNN, "better", ("cnn_small_bn", "cnn_small"),
          scale=_CNN_SCALE),
    # Lecture 000: the regularization ladder, in the overfitting regime.
    Claim("000", "normalizing the inputs helps", "regularization_overfit_norm5", _NORM5,
          "better", ("normalization", "baseline"), scale=_LADDER5_SCALE,
          why="with Adam, whose update is invariant to a constant rescaling of each "
              "parameter's gradient, raw 0-255 pixels train as well as standardized ones "
              "here"),
    Claim("000", "BatchNorm helps", "regularization_overfit_reg5", _REG5, "better",
          ("batchnorm", "normalization"), scale=_LADDER5_SCALE,
          why="48 steps: with the moving statistics recomputed (precise BN) the rung "
              "rises from ~0.52 to ~0.78 test but still trails; BatchNorm's gains "
              "(higher rates, deep nets) do not show in 48 Adam steps on 800 images"),
    Claim("000", "L2 narrows the train/validation gap", "regularization_overfit24",
          _LADDER24, "better", ("l2", "normalization"),
          metric="train_eval_accuracy-val_accuracy",
          higher_is_better=False, scale=_LADDER24_SCALE,
          why="at the lecture-free strength 1e-4 both rungs memorize the 800 images "
              "(training accuracy 1.00 in evaluation mode) and validate at ~0.78; the "
              "penalty ends ~30x the data loss (0.06 vs 0.002) and still does not "
              "stop it; the lecture gives no strength"),
    Claim("000", "dropout narrows the train/validation gap", "regularization_overfit_reg5",
          _REG5, "better", ("dropout", "normalization"),
          metric="train_eval_accuracy-val_accuracy",
          higher_is_better=False, scale=_LADDER5_SCALE),
    Claim("000", "max-pooling trains much faster", "regularization_overfit5", _LADDER5,
          "faster", ("dropout_maxnorm_maxpool", "dropout_maxnorm"), scale=_POOL_BENCH_SCALE,
          benchmark="bench/pooling.json", benchmark_command=_POOL_BENCH),
    Claim("000", "max-pooling lowers the accuracy", "regularization_overfit5", _LADDER5,
          "better", ("dropout_maxnorm", "dropout_maxnorm_maxpool"), scale=_LADDER5_SCALE),
    Claim("000", "stride-2 convolutions are as fast as pooling", "regularization_overfit5",
          _LADDER5, "as_fast", ("dropout_maxnorm_strides", "dropout_maxnorm_maxpool"),
          scale=_POOL_BENCH_SCALE, benchmark="bench/pooling.json",
          benchmark_command=_POOL_BENCH,
          why="much faster: a stride-2 convolution computes a quarter of the "
              "outputs, where pooling follows a full-resolution convolution"),
    Claim("000", "stride-2 convolutions are less accurate than pooling",
          "regularization_overfit5", _LADDER5, "better",
          ("dropout_maxnorm_maxpool", "dropout_maxnorm_strides"), scale=_LADDER5_SCALE,
          why="more accurate here, not less (8 epochs on 800 images: the pooled "
              "network, with dropout, is still underfitting)"),
    # Lecture 003: few data, at two sizes of the digits stand-in.
    *_few_data("transfer_digits100", _TRANSFER100, _TRANSFER100_SCALE),
    *_few_data("transfer_digits5", _TRANSFER, _TRANSFER_SCALE, why=_TOO_EASY),
]
