#include "polyak/nn/module.h"

#include <map>
#include <set>

#include "polyak/core/error.h"

namespace polyak {

// ---- registration ----------------------------------------------------------------------

void Module::check_new_name(const char* fn, const std::string& name) const {
  POLYAK_CHECK(!name.empty() && name.find('.') == std::string::npos, fn, ": name '", name,
               "' must be non-empty and contain no '.'");
  auto taken = [&](const auto& list) {
    for (const auto& entry : list)
      if (entry.first == name) return true;
    return false;
  };
  bool used = taken(generators_) || taken(counters_) || taken(children_);
  for (const TensorSlot& s : params_) used = used || s.name == name;
  for (const TensorSlot& s : buffers_) used = used || s.name == name;
  POLYAK_CHECK(!used, fn, ": name '", path_, name, "' is already registered");
}

void Module::register_parameter(const std::string& name, Tensor& slot) {
  check_new_name("register_parameter", name);
  POLYAK_CHECK(slot.defined(), "register_parameter: '", path_, name, "' is undefined");
  slot.requires_grad_(true);
  slot.set_name(path_ + name);
  params_.push_back({name, &slot, true});
}

void Module::register_buffer(const std::string& name, Tensor& slot, bool persistent) {
  check_new_name("register_buffer", name);
  POLYAK_CHECK(slot.defined(), "register_buffer: '", path_, name, "' is undefined");
  slot.set_name(path_ + name);
  buffers_.push_back({name, &slot, persistent});
}

void Module::register_generator(const std::string& name, Generator& slot) {
  check_new_name("register_generator", name);
  generators_.emplace_back(name, &slot);
}

void Module::register_counter(const std::string& name, int64_t& slot) {
  check_new_name("register_counter", name);
  counters_.emplace_back(name, &slot);
}

void Module::add_child(const std::string& name, std::shared_ptr<Module> child) {
  check_new_name("register_module", name);
  POLYAK_CHECK(child != nullptr, "register_module: '", path_, name, "' is null");
  child->set_path(path_ + name + ".");
  child->train(training_);
  children_.emplace_back(name, std::move(child));
}

void Module::set_path(const std::string& path) {
  path_ = path;
  for (TensorSlot& s : params_) s.slot->set_name(path_ + s.name);
  for (TensorSlot& s : buffers_) s.slot->set_name(path_ + s.name);
  for (auto& [name, child] : children_) child->set_path(path_ + name + ".");
}

// ---- traversal -------------------------------------------------------------------------

void Module::collect(const std::string& prefix, NamedTensors& out, bool params, bool buffers,
                     bool persistent_only) const {
  if (params)
    for (const TensorSlot& s : params_) out.emplace_back(prefix + s.name, *s.slot);
  if (buffers)
    for (const TensorSlot& s : buffers_)
      if (s.persistent || !persistent_only) out.emplace_back(prefix + s.name, *s.slot);
  for (const auto& [name, child] : children_)
    child->collect(prefix + name + ".", out, params, buffers, persistent_only);
}

NamedTensors Module::named_parameters() const {
  NamedTensors out;
  collect("", out, true, false, false);
  return out;
}

std::vector<Tensor> Module::parameters() const {
  std::vector<Tensor> out;
  for (auto& [name, t] : named_parameters()) out.push_back(t);
  return out;
}

NamedTensors Module::named_buffers() const {
  NamedTensors out;
  collect("", out, false, true, false);
  return out;
}

std::vector<std::pair<std::string, Generator*>> Module::named_generators() {
  std::vector<std::pair<std::string, Generator*>> out = generators_;
  for (auto& [name, child] : children_)
    for (auto& [sub, gen] : child->named_generators()) out.emplace_back(name + "." + sub, gen);
  return out;
}

std::vector<std::pair<std::string, int64_t*>> Module::named_counters() {
  std::vector<std::pair<std::string, int64_t*>> out = counters_;
  for (auto& [name, child] : children_)
    for (auto& [sub, counter] : child->named_counters())
      out.emplace_back(name + "." + sub, counter);
  return out;
}

std::vector<std::pair<std::string, std::shared_ptr<Module>>> Module::named_children() const {
  return children_;
}

int64_t Module::num_parameters() const {
  int64_t n = 0;
  for (const Tensor& p : parameters()) n += p.numel();
  return n;
}

Tensor* Module::find_parameter_slot(const std::string& path) {
  size_t dot = path.find('.');
  if (dot == std::string::npos) {
    for (TensorSlot& s : params_)
      if (s.name == path) return s.slot;
    return nullptr;
  }
  std::string head = path.substr(0, dot);
  for (auto& [name, child] : children_)
    if (name == head) return child->find_parameter_slot(path.substr(dot + 1));
  return nullptr;
}

Tensor Module::parameter(const std::string& path) const {
  Tensor* slot = const_cast<Module*>(this)->find_parameter_slot(path);
  POLYAK_CHECK(slot != nullptr, "Module::parameter: no parameter named '", path, "'");
  return *slot;
}

void Module::set_parameter(const std::string& path, const Tensor& value) {
  Tensor* slot = find_parameter_slot(path);
  POLYAK_CHECK(slot != nullptr, "Module::set_parameter: no parameter named '", path, "'");
  check_defined("Module::set_parameter", path.c_str(), value);
  POLYAK_CHECK(value.shape() == slot->shape() && value.dtype() == slot->dtype(),
               "Module::set_parameter: '", path, "' given ", value.dtype(), " ", value.shape(),
               ", expected ", slot->dtype(), " ", slot->shape());
  *slot = value;
}

// ---- mode ------------------------------------------------------------------------------

void Module::train(bool on) {
  training_ = on;
  for (auto& [name, child] : children_) child->train(on);
}

// ---- state -----------------------------------------------------------------------------

NamedTensors Module::state_dict() const {
  NamedTensors out;
  collect("", out, true, true, true);
  for (auto& [name, t] : out) t = t.detach();
  return out;
}

void Module::load_state_dict(const NamedTensors& state) {
  NamedTensors own;
  collect("", own, true, true, true);
  std::map<std::string, const Tensor*> given;
  std::vector<std::string> problems;
  for (const auto& [name, t] : state)
    if (!given.emplace(name, &t).second) problems.push_back("duplicate key '" + name + "'");

  std::set<std::string> expected;
  for (const auto& [name, t] : own) {
    expected.insert(name);
    auto it = given.find(name);
    if (it == given.end()) {
      problems.push_back("missing key '" + name + "'");
      continue;
    }
    const Tensor& src = *it->second;
    if (!src.defined()) {
      problems.push_back("'" + name + "' is undefined");
    } else if (src.shape() != t.shape()) {
      problems.push_back(
          detail::concat("'", name, "' has shape ", src.shape(), ", expected ", t.shape()));
    } else if (src.dtype() != t.dtype()) {
      problems.push_back(
          detail::concat("'", name, "' has dtype ", src.dtype(), ", expected ", t.dtype()));
    }
  }
  for (const auto& [name, t] : state)
    if (!expected.count(name)) problems.push_back("unexpected key '" + name + "'");

  if (!problems.empty()) {
    std::string message = "load_state_dict: ";
    for (size_t i = 0; i < problems.size(); ++i) message += (i ? "; " : "") + problems[i];
    throw Error(message);
  }
  NoGradGuard no_grad;
  for (auto& [name, t] : own) {
    Tensor dst = t;
    dst.copy_(*given.at(name));
  }
}

template <class F>
void Module::convert(F&& f) {
  NoGradGuard no_grad;
  for (TensorSlot& s : params_) {
    Tensor converted = f(*s.slot);
    if (converted.is_same(*s.slot)) continue;
    *s.slot = converted.detach();
    s.slot->requires_grad_(true);
    s.slot->set_name(path_ + s.name);
  }
  for (TensorSlot& s : buffers_) {
    Tensor converted = f(*s.slot);
    if (converted.is_same(*s.slot)) continue;
    *s.slot = converted.detach();
    s.slot->set_name(path_ + s.name);
  }
  for (auto& [name, child] : children_) child->convert(f);
}

Module& Module::to(DType dtype) {
  convert([&](const Tensor& t) { return t.dtype() == dtype ? t : t.to(dtype); });
  return *this;
}

Module& Module::to(Device device) {
  convert([&](const Tensor& t) { return t.device() == device ? t : t.to(device); });
  return *this;
}

DType Module::dtype() const {
  NamedTensors p = named_parameters();
  return p.empty() ? DType::f32 : p.front().second.dtype();
}

Device Module::device() const {
  NamedTensors p = named_parameters();
  return p.empty() ? Device::cpu() : p.front().second.device();
}

void Module::zero_grad() {
  for (const Tensor& p : parameters()) p.zero_grad();
}

void check_choice(const char* fn, const char* field, const std::string& value,
                  const std::vector<std::string>& valid) {
  for (const std::string& v : valid)
    if (v == value) return;
  std::string list;
  for (size_t i = 0; i < valid.size(); ++i) list += (i ? ", " : "") + valid[i];
  fail(fn, ": ", field, " = '", value, "' is not one of: ", list);
}

}  // namespace polyak
