// Module: a named tree of parameters, buffers, generators and submodules.
//
// A module declares its tensors as members and registers each member *slot* once:
//
//   class Linear : public Module {
//    public:
//     Linear(...) { weight = ...; register_parameter("weight", weight); }
//     Tensor weight;
//   };
//
// The registry keeps a pointer to the slot, so whatever replaces a parameter — to(f64),
// load_state_dict, set_parameter (a test substituting a gradcheck input) — replaces exactly
// the tensor that forward() reads. A module is therefore neither copyable nor movable; it
// lives behind a shared_ptr, and submodules are shared_ptr members registered by name.
//
// Paths: registering a submodule renames every tensor below it to its dotted path
// ("layers.0.attention.qkv_proj.weight"); Tensor::name() of a parameter is that path.
// Order: parameters() and state_dict() list a module's own tensors in registration
// order, then each submodule's in registration order (depth first), which is
// deterministic for a given construction.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "polyak/core/rng.h"
#include "polyak/core/tensor.h"

namespace polyak {

// An ordered list of (dotted name, tensor): state dicts and named parameter lists.
using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

class Module {
 public:
  Module() = default;
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;
  Module(Module&&) = delete;
  Module& operator=(Module&&) = delete;

  // ---- traversal -------------------------------------------------------------------
  std::vector<Tensor> parameters() const;
  NamedTensors named_parameters() const;
  NamedTensors named_buffers() const;
  // Every generator below this module (dropout masks), by dotted path: what a checkpoint
  // saves so that a resumed run draws the same masks.
  std::vector<std::pair<std::string, Generator*>> named_generators();
  // Every counter below this module (Performer's training forwards), by dotted path: host
  // state that a resumed run restores with the generators.
  std::vector<std::pair<std::string, int64_t*>> named_counters();
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> named_children() const;
  int64_t num_parameters() const;

  // The parameter at dotted `path`; throws naming the path when there is none.
  Tensor parameter(const std::string& path) const;
  // Replaces the parameter at `path` by `value` (same shape and dtype), as forward() will
  // read it: e.g. a gradcheck input substituted for a weight. `value` is used as given
  // (not renamed, not marked).
  void set_parameter(const std::string& path, const Tensor& value);

  // ---- mode ------------------------------------------------------------------------
  // Sets training mode on this module and every submodule (dropout is active only in
  // training mode).
  void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }

  // ---- state -----------------------------------------------------------------------
  // Parameters and persistent buffers by dotted path, in parameters() order. The tensors
  // alias the module's (detached): writing into them writes into the module.
  NamedTensors state_dict() const;
  // Copies every entry of `state` into the tensor of the same path. Throws polyak::Error
  // naming the keys when an entry is missing or unexpected, or has another shape or dtype;
  // nothing is copied unless every entry matches.
  void load_state_dict(const NamedTensors& state);

  // Converts every parameter and buffer in place (gradients are dropped; parameters stay
  // leaves that require grad, under the same names).
  Module& to(DType dtype);
  Module& to(Device device);
  // Of the first parameter (f32 / cpu when there is none).
  DType dtype() const;
  Device device() const;

  // Drops the gradient of every parameter.
  void zero_grad();

 protected:
  // `slot` must be a member of this module (it is read and written through a pointer).
  // Marks the tensor as a leaf that requires grad and names it by its path.
  void register_parameter(const std::string& name, Tensor& slot);
  // A tensor that follows to() but is not trained. Persistent buffers are in state_dict();
  // non-persistent ones (e.g. a table recomputed from the config) are not.
  void register_buffer(const std::string& name, Tensor& slot, bool persistent = true);
  // A random stream owned by this module (e.g. dropout's).
  void register_generator(const std::string& name, Generator& slot);
  // A count this module keeps across forwards (e.g. the training forwards between redraws).
  void register_counter(const std::string& name, int64_t& slot);
  template <class M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> module) {
    add_child(name, module);
    return module;
  }

  // This module's dotted prefix ("layers.0.attention."), empty at the root.
  const std::string& path() const { return path_; }

 private:
  struct TensorSlot {
    std::string name;
    Tensor* slot;
    bool persistent;
  };
  void add_child(const std::string& name, std::shared_ptr<Module> child);
  void check_new_name(const char* fn, const std::string& name) const;
  void set_path(const std::string& path);
  void collect(const std::string& prefix, NamedTensors& out, bool params, bool buffers,
               bool persistent_only) const;
  Tensor* find_parameter_slot(const std::string& path);
  template <class F>
  void convert(F&& f);

  std::vector<TensorSlot> params_;
  std::vector<TensorSlot> buffers_;
  std::vector<std::pair<std::string, Generator*>> generators_;
  std::vector<std::pair<std::string, int64_t*>> counters_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
  std::string path_;  // dotted prefix of this module ("layers.0."), empty at the root
  bool training_ = true;
};

// Eval mode for a scope: puts `module` in eval mode and gives it back the mode it had when
// the scope ends, also when it ends by an exception (evaluation, generation).
class EvalMode {
 public:
  explicit EvalMode(Module& module) : module_(module), training_(module.is_training()) {
    module_.eval();
  }
  ~EvalMode() { module_.train(training_); }
  EvalMode(const EvalMode&) = delete;
  EvalMode& operator=(const EvalMode&) = delete;

 private:
  Module& module_;
  bool training_;
};

// An indexed list of submodules of one type, registered as "0", "1", ...
template <class M>
class ModuleList : public Module {
 public:
  void push_back(std::shared_ptr<M> module) {
    items_.push_back(register_module(std::to_string(items_.size()), std::move(module)));
  }
  size_t size() const { return items_.size(); }
  bool empty() const { return items_.empty(); }
  const std::shared_ptr<M>& operator[](size_t i) const { return items_[i]; }
  auto begin() const { return items_.begin(); }
  auto end() const { return items_.end(); }

 private:
  std::vector<std::shared_ptr<M>> items_;
};

// Throws polyak::Error "fn: field = 'value' is not one of: a, b, c" unless `value` is one
// of `valid`: how configs reject unknown kinds.
void check_choice(const char* fn, const char* field, const std::string& value,
                  const std::vector<std::string>& valid);

}  // namespace polyak
