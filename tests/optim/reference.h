// Scalar reference optimizers for the tests: the published update rules written out as
// plain loops over std::vector<double>, independent of polyak's kernels.
#pragma once

#include <cmath>
#include <vector>

namespace polyak::testing {

using Vec = std::vector<double>;

// The gradient the tests feed at each step: that of f(p) = Σ_i (i+1)/2 · (p_i − c_i)²
// plus a step-dependent wobble, so that the moments see gradients that change sign.
inline Vec test_gradient(const Vec& p, int step) {
  Vec g(p.size());
  for (size_t i = 0; i < p.size(); ++i) {
    const double c = 0.3 * static_cast<double>(i) - 0.5;
    g[i] = static_cast<double>(i + 1) * (p[i] - c) + 0.25 * std::sin(1.7 * step + 0.9 * i);
  }
  return g;
}

struct RefSGD {
  double lr, momentum, dampening, weight_decay;
  bool nesterov;
  Vec buf;
  int t = 0;
  void step(Vec& p, Vec g) {
    ++t;
    if (buf.empty()) buf.assign(p.size(), 0.0);
    for (size_t i = 0; i < p.size(); ++i) {
      double d = g[i] + weight_decay * p[i];
      if (momentum != 0) {
        if (t == 1) {
          buf[i] = d;
        } else {
          buf[i] = momentum * buf[i] + (1 - dampening) * d;
        }
        d = nesterov ? d + momentum * buf[i] : buf[i];
      }
      p[i] = p[i] - lr * d;
    }
  }
};

struct RefAdam {
  double lr, beta1, beta2, eps, weight_decay;
  bool decoupled;
  Vec m, v;
  int t = 0;
  void step(Vec& p, Vec g) {
    ++t;
    if (m.empty()) {
      m.assign(p.size(), 0.0);
      v.assign(p.size(), 0.0);
    }
    for (size_t i = 0; i < p.size(); ++i) {
      if (decoupled) {
        p[i] = p[i] * (1 - lr * weight_decay);
      } else {
        g[i] = g[i] + weight_decay * p[i];
      }
      m[i] = beta1 * m[i] + (1 - beta1) * g[i];
      v[i] = beta2 * v[i] + (1 - beta2) * g[i] * g[i];
      const double m_hat = m[i] / (1 - std::pow(beta1, t));
      const double v_hat = v[i] / (1 - std::pow(beta2, t));
      p[i] = p[i] - lr * m_hat / (std::sqrt(v_hat) + eps);
    }
  }
};

// docs/math.md §9, line by line.
struct RefRAdam {
  double lr, beta1, beta2, eps, weight_decay;
  bool decoupled;
  Vec m, v;
  int t = 0;
  bool last_rectified = false;
  void step(Vec& p, Vec g) {
    ++t;
    if (m.empty()) {
      m.assign(p.size(), 0.0);
      v.assign(p.size(), 0.0);
    }
    const double rho_inf = 2 / (1 - beta2) - 1;
    const double beta2_t = std::pow(beta2, t);
    const double rho_t = rho_inf - 2 * t * beta2_t / (1 - beta2_t);
    last_rectified = rho_t > 5;
    for (size_t i = 0; i < p.size(); ++i) {
      if (decoupled) {
        p[i] = p[i] - lr * weight_decay * p[i];
      } else {
        g[i] = g[i] + weight_decay * p[i];
      }
      m[i] = beta1 * m[i] + (1 - beta1) * g[i];
      v[i] = beta2 * v[i] + (1 - beta2) * g[i] * g[i];
      const double m_hat = m[i] / (1 - std::pow(beta1, t));
      if (rho_t > 5) {
        const double r = std::sqrt((rho_t - 4) * (rho_t - 2) * rho_inf /
                                   ((rho_inf - 4) * (rho_inf - 2) * rho_t));
        p[i] = p[i] - lr * r * m_hat * std::sqrt(1 - beta2_t) / (std::sqrt(v[i]) + eps);
      } else {
        p[i] = p[i] - lr * m_hat;
      }
    }
  }
};

}  // namespace polyak::testing
