// Embedding training in an application: a linear transformer learns the copy task inside an
// ordinary C++ loop, with no Python and nothing but polyak.
//
//   example_embed_training [steps]
#include <polyak/polyak.h>
#include <cstdlib>
#include <iostream>

using namespace polyak;

int main(int argc, char** argv) {
  const int steps = argc > 1 ? std::atoi(argv[1]) : 300;
  TransformerConfig cfg;  // every field has a default; shrink it for a quick demo
  cfg.vocab = 11;
  cfg.max_len = 24;
  cfg.layers = 2;
  cfg.heads = 2;
  cfg.d_model = 32;
  cfg.ff_dim = 64;
  cfg.dropout = 0.0;
  cfg.attention = "linear";
  TransformerLM model(cfg);
  RAdam opt(model.parameters(), {.lr = 3e-3, .weight_decay = 0.01});
  CopyTask task({.length = 24, .seed = 1});

  for (int step = 1; step <= steps; ++step) {
    Batch b = task.batch(32);
    Tensor logits = model(b.tokens);
    Tensor loss = cross_entropy(logits, b.targets, b.mask);
    opt.zero_grad();
    loss.backward();
    clip_grad_norm(model.parameters(), 1.0);
    opt.step();
    if (step % 50 == 0)
      std::cout << "step " << step << "  loss " << loss.item() << "  word accuracy "
                << copy_accuracy(logits, b) << "\n";
  }
  model.eval();
  CopyTask test({.length = 24, .seed = 2});
  Batch b = test.batch(256);
  NoGradGuard no_grad;
  std::cout << "test word accuracy: " << copy_accuracy(model(b.tokens), b) << "\n";
  return 0;
}
