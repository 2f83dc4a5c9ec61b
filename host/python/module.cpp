// The `galvani._galvani` extension module: the engine for the Python package (host/python/galvani). It plans and
// runs exactly what `galvani run` plans and runs; tensors cross the boundary through DLPack, so nothing is copied
// either way. The Python package gives it its shape (Session, run, layers, the Captum facade); this file only
// converts.
#include <pybind11/functional.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <ATen/DLConvertor.h>
#include <torch/script.h>

#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "galvani/core/config.h"
#include "galvani/core/execute.h"
#include "galvani/core/plan.h"
#include "galvani/core/plugin_call.h"
#include "galvani/core/plugin_host.h"
#include "galvani/core/process.h"
#include "galvani/core/writer.h"
#include "galvani/error.h"
#include "galvani/version.h"

namespace py = pybind11;
namespace core = galvani::core;

namespace {

// ---- tensors, both ways, without copies ------------------------------------------------------------------------

// DLPack (torch 1.13 and 2.x alike) writes stride 1 for every dimension of size 1, so a contiguous [8, 1, 28, 28]
// comes across with strides [784, 1, 28, 1], which is also channels-last: convolutions then take their channels-last
// kernels and round differently. A contiguous tensor gets its usual strides back (a view; nothing is copied).
std::vector<std::int64_t> usual_strides(c10::IntArrayRef sizes) {
  std::vector<std::int64_t> strides(sizes.size(), 1);
  for (std::int64_t i = static_cast<std::int64_t>(sizes.size()) - 2; i >= 0; --i)
    strides[i] = strides[i + 1] * std::max<std::int64_t>(sizes[i + 1], 1);
  return strides;
}

torch::Tensor with_usual_strides(const torch::Tensor& t) {
  if (!t.is_contiguous() || t.numel() == 0) return t;
  const auto strides = usual_strides(t.sizes());
  if (t.strides() == c10::IntArrayRef(strides)) return t;
  return t.as_strided(t.sizes(), strides, t.storage_offset());
}

constexpr const char* kCapsule = "dltensor";
constexpr const char* kUsedCapsule = "used_dltensor";

// A torch.Tensor as an at::Tensor on the same memory (DLPack). `what` names the argument in messages.
torch::Tensor to_aten(const py::handle& object, const std::string& what) {
  const auto torch_module = py::module_::import("torch");
  if (!py::isinstance(object, torch_module.attr("Tensor")))
    throw galvani::ConfigError(what + ": expected a torch.Tensor, got " +
                               std::string(py::str(py::type::of(object).attr("__name__"))));
  py::object capsule = py::module_::import("torch.utils.dlpack").attr("to_dlpack")(object.attr("detach")());
  auto* managed = static_cast<DLManagedTensor*>(PyCapsule_GetPointer(capsule.ptr(), kCapsule));
  if (!managed) throw py::error_already_set();
  auto tensor = at::fromDLPack(managed);  // owns `managed` from here on
  PyCapsule_SetName(capsule.ptr(), kUsedCapsule);
  return with_usual_strides(tensor);
}

// An at::Tensor as a torch.Tensor on the same memory (DLPack); None for an undefined tensor.
py::object to_python(const torch::Tensor& tensor) {
  if (!tensor.defined()) return py::none();
  DLManagedTensor* managed = at::toDLPack(tensor);
  PyObject* capsule = PyCapsule_New(managed, kCapsule, [](PyObject* c) {
    // Still named "dltensor": no consumer took it, so it is ours to free.
    if (PyCapsule_IsValid(c, kCapsule)) {
      auto* m = static_cast<DLManagedTensor*>(PyCapsule_GetPointer(c, kCapsule));
      if (m && m->deleter) m->deleter(m);
    }
  });
  if (!capsule) {
    managed->deleter(managed);
    throw py::error_already_set();
  }
  py::object out =
      py::module_::import("torch.utils.dlpack").attr("from_dlpack")(py::reinterpret_steal<py::object>(capsule));
  if (tensor.is_contiguous() && tensor.dim() > 0)  // see with_usual_strides
    out = out.attr("as_strided")(tensor.sizes().vec(), usual_strides(tensor.sizes()));
  return out;
}

// ---- configuration: Python values into the config tree the TOML parser builds ---------------------------------

galvani::OptionValue to_option(const py::handle& value, const std::string& where) {
  using galvani::OptionValue;
  if (py::isinstance<py::bool_>(value)) return OptionValue::boolean(value.cast<bool>());
  if (py::isinstance<py::int_>(value)) {
    try {
      return OptionValue::integer(value.cast<std::int64_t>());
    } catch (const py::cast_error&) {
      throw galvani::ConfigError(where + ": " + std::string(py::str(value)) + " does not fit in 64 bits");
    }
  }
  if (py::isinstance<py::float_>(value)) return OptionValue::floating(value.cast<double>());
  if (py::isinstance<py::str>(value)) return OptionValue::string(value.cast<std::string>());
  if (py::isinstance<py::list>(value) || py::isinstance<py::tuple>(value)) {
    std::vector<OptionValue> items;
    std::size_t i = 0;
    for (const auto& item : value) items.push_back(to_option(item, where + "[" + std::to_string(i++) + "]"));
    return OptionValue::list(std::move(items));
  }
  if (py::isinstance<py::dict>(value)) {
    std::map<std::string, OptionValue> items;
    for (const auto& [k, v] : value.cast<py::dict>()) {
      if (!py::isinstance<py::str>(k)) throw galvani::ConfigError(where + ": keys must be strings");
      const auto key = k.cast<std::string>();
      if (v.is_none()) continue;  // None: the key's default, as if it were not given
      items.emplace(key, to_option(v, where.empty() ? key : where + "." + key));
    }
    return OptionValue::dict(std::move(items));
  }
  throw galvani::ConfigError(where + ": expected a bool, number, string, list or dict, got " +
                             std::string(py::str(py::type::of(value).attr("__name__"))) +
                             (py::hasattr(value, "shape") ? " (tensors go in inputs=, baselines= or target=)" : ""));
}

// The plugin folder this module's engine uses (the build tree's or the installed one); set once on import.
std::string& builtin_plugins() {
  static std::string dir;
  return dir;
}

core::PluginHost& plugin_host() {
  auto& host = core::global_plugin_host();
  host.load_default(builtin_plugins());
  return host;
}

// ---- results as Python objects ---------------------------------------------------------------------------------

py::dict evaluation_to_python(const galvani::Evaluation& e) {
  py::list metrics, tables, curves, matrices;
  for (const auto& m : e.metrics)
    metrics.append(py::dict(py::arg("method") = m.method, py::arg("layer") = m.layer, py::arg("name") = m.name,
                            py::arg("value") = m.value));
  for (const auto& t : e.tables) {
    py::list rows;
    for (const auto& row : t.rows) {
      py::list cells;
      for (const auto& c : row) {
        if (std::holds_alternative<double>(c))
          cells.append(std::get<double>(c));
        else
          cells.append(std::get<std::string>(c));
      }
      rows.append(cells);
    }
    tables.append(py::dict(py::arg("name") = t.name, py::arg("columns") = t.columns, py::arg("rows") = rows,
                           py::arg("report") = t.report));
  }
  for (const auto& c : e.curves)
    curves.append(py::dict(py::arg("method") = c.method, py::arg("layer") = c.layer, py::arg("name") = c.name,
                           py::arg("x_label") = c.x_label, py::arg("y_label") = c.y_label, py::arg("x") = c.x,
                           py::arg("y") = c.y));
  for (const auto& m : e.matrices)
    matrices.append(py::dict(py::arg("method") = m.method, py::arg("layer") = m.layer, py::arg("name") = m.name,
                             py::arg("row_title") = m.row_title, py::arg("column_title") = m.column_title,
                             py::arg("row_labels") = m.row_labels, py::arg("column_labels") = m.column_labels,
                             py::arg("values") = to_python(m.values)));
  return py::dict(py::arg("metrics") = metrics, py::arg("tables") = tables, py::arg("curves") = curves,
                  py::arg("matrices") = matrices);
}

/// A finished run: the plan it ran and its results. Writes them as `galvani run` does when asked.
class Run {
 public:
  Run(std::shared_ptr<const core::Plan> plan, core::RunResult result)
      : plan_(std::move(plan)), result_(std::move(result)) {}

  py::list results() const {
    py::list out;
    for (const auto& r : result_.results) {
      py::dict extras;
      for (const auto& [k, v] : r.extras) extras[py::str(k)] = to_python(v);
      out.append(py::dict(py::arg("method") = r.method, py::arg("layer") = r.layer,
                          py::arg("space") = core::to_string(r.space), py::arg("values") = to_python(r.values),
                          py::arg("delta") = to_python(r.delta), py::arg("extras") = extras,
                          py::arg("notes") = r.notes));
    }
    return out;
  }
  py::list evaluations() const {
    py::list out;
    for (const auto& [name, e] : result_.evaluations) out.append(py::make_tuple(name, evaluation_to_python(e)));
    return out;
  }
  py::list failures() const {
    py::list out;
    for (const auto& f : result_.failures)
      out.append(py::dict(py::arg("kind") = f.kind, py::arg("name") = f.name, py::arg("message") = f.message));
    return out;
  }
  const core::Timings& timings() const { return result_.timings; }
  py::object f_input() const { return to_python(result_.f_input); }
  py::object f_baseline() const { return to_python(result_.f_baseline); }
  py::object targets() const { return to_python(plan_->targets); }
  py::object inputs() const { return to_python(plan_->inputs); }
  py::object baselines() const { return to_python(plan_->baselines); }

  /// Writes every result into `dir` as `galvani run` does (claimed, staged, published atomically).
  void write(const std::string& dir) const {
    py::gil_scoped_release release;
    core::ResultsFolder out(dir);
    core::write_results(*plan_, result_, out.staging());
    out.publish();
  }

 private:
  std::shared_ptr<const core::Plan> plan_;
  core::RunResult result_;
};

/// A planned run: everything checked, nothing computed yet.
class Planned {
 public:
  Planned(std::shared_ptr<core::Plan> plan, core::Timings planning)
      : plan_(std::move(plan)), planning_(std::move(planning)) {}
  std::string describe() const { return plan_->describe(); }
  std::string output_dir() const { return plan_->config.output.dir; }

  /// Runs the plan with the GIL released; `progress(stage, done, total)` is called with the GIL held. An
  /// exception the callback raises is raised here once the run ends, and no further progress is reported.
  Run execute(const std::optional<py::function>& progress) const {
    std::mutex mutex;
    std::optional<py::error_already_set> callback_error;
    core::ProgressFn fn;
    if (progress) {
      fn = [&](const std::string& stage, std::size_t done, std::size_t total) {
        std::lock_guard<std::mutex> lock(mutex);
        if (callback_error) return;
        py::gil_scoped_acquire gil;
        try {
          (*progress)(stage, done, total);
        } catch (py::error_already_set& e) {
          callback_error.emplace(std::move(e));
        }
      };
    }
    core::RunResult result;
    {
      py::gil_scoped_release release;
      result = core::execute(*plan_, fn);
    }
    result.timings.insert(planning_.begin(), planning_.end());  // as `galvani run` reports them
    if (callback_error) throw std::move(*callback_error);
    return Run(plan_, std::move(result));
  }

 private:
  std::shared_ptr<core::Plan> plan_;
  core::Timings planning_;  ///< make_plan's stages
};

Planned plan_config(const core::RunConfig& config, core::ModelCache* models = nullptr) {
  auto& host = plugin_host();
  py::gil_scoped_release release;
  core::Timings planning;
  auto plan = std::make_shared<core::Plan>(core::make_plan(config, host, &planning, models));
  return Planned(std::move(plan), std::move(planning));
}

// Plans a config: from a tree (Python keyword arguments) with tensors in place of the data files, or from a file.
// `models` (a Session's) keeps the loaded model from call to call.
Planned plan_tree(const py::dict& tree, const std::string& base_dir, const std::string& source,
                  const py::object& inputs, const py::object& baselines, const py::object& target,
                  core::ModelCache* models) {
  auto config = core::parse_config_tree(to_option(tree, ""), base_dir, source);
  if (!inputs.is_none()) {
    config.data.inputs_tensor = to_aten(inputs, "inputs");
    config.data.inputs = "<inputs tensor>";
  }
  if (!baselines.is_none()) {
    config.data.baselines.kind = core::BaselineSpec::Kind::File;
    config.data.baselines.tensor = to_aten(baselines, "baselines");
    config.data.baselines.file = "<baselines tensor>";
  }
  if (!target.is_none()) {
    config.data.target.kind = core::TargetSpec::Kind::File;
    config.data.target.tensor = to_aten(target, "target");
    config.data.target.file = "<target tensor>";
  }
  return plan_config(config, models);
}

Planned plan_file(const std::string& path, const std::string& out) {
  auto config = core::parse_config_file(path);
  if (!out.empty()) config.output.dir = out;
  return plan_config(config);
}

// What `galvani layers` prints, as records.
py::list layers(const std::string& model_path, const std::string& backend, const py::object& example,
                const std::string& device) {
  auto& host = plugin_host();
  galvani::ModelOptions options;
  options.device = torch::Device(device);
  const torch::Tensor x = example.is_none() ? torch::Tensor() : to_aten(example, "example_input");
  std::vector<galvani::LayerInfo> infos;
  {
    py::gil_scoped_release release;
    infos = core::list_layers(host, backend, model_path, options, x);
  }
  py::list out;
  for (const auto& l : infos) {
    py::object shape = py::none();
    if (!l.shape.empty()) shape = py::tuple(py::cast(l.shape));
    out.append(py::dict(py::arg("name") = l.name, py::arg("type") = l.type, py::arg("shape") = shape,
                        py::arg("call_index") = l.call_index, py::arg("call_count") = l.call_count));
  }
  return out;
}

py::list plugins() {
  auto& host = plugin_host();
  py::list out;
  for (const auto& r : host.records()) {
    py::list components;
    for (const auto* c : host.registry().all())
      if (c->file == r.file)
        components.append(py::dict(py::arg("kind") = core::to_string(c->kind), py::arg("name") = c->name,
                                   py::arg("summary") = c->summary));
    out.append(py::dict(py::arg("file") = r.file, py::arg("name") = r.name, py::arg("version") = r.version,
                        py::arg("loaded") = r.loaded, py::arg("error") = r.error,
                        py::arg("components") = components));
  }
  return out;
}

std::vector<std::string> component_names(const std::string& kind) {
  const auto& reg = plugin_host().registry();
  for (auto k : {core::ComponentKind::Backend, core::ComponentKind::Path, core::ComponentKind::Method,
                 core::ComponentKind::Evaluator})
    if (kind == core::to_string(k)) return reg.names(k);
  throw galvani::ConfigError("kind: \"" + kind + "\" is not one of backend, path, method, evaluator");
}

}  // namespace

PYBIND11_MODULE(_galvani, m) {
  m.doc() = "The Galvani engine (use the `galvani` package, not this module)";
  m.attr("__version__") = GALVANI_VERSION_STRING;
  core::tune_allocator();

  // One hierarchy: galvani.Error and the SDK's error kinds beneath it; anything else the engine throws is an
  // InternalError (a bug: please report it). pybind11 tries the newest translator first: the catch-all goes first.
  static py::exception<galvani::Error> error(m, "Error", PyExc_RuntimeError);
  static py::exception<galvani::ConfigError> config_error(m, "ConfigError", error.ptr());
  static py::exception<galvani::ModelError> model_error(m, "ModelError", error.ptr());
  static py::exception<galvani::ShapeError> shape_error(m, "ShapeError", error.ptr());
  static py::exception<galvani::NumericError> numeric_error(m, "NumericError", error.ptr());
  static py::exception<galvani::IoError> io_error(m, "IoError", error.ptr());
  static py::exception<galvani::PluginError> plugin_error(m, "PluginError", error.ptr());
  static py::exception<std::exception> internal_error(m, "InternalError", error.ptr());
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const py::error_already_set&) {
      throw;  // a Python exception: as it was
    } catch (const py::builtin_exception&) {
      throw;  // pybind11's own (TypeError for a wrong argument type, ...)
    } catch (const std::exception& e) {
      PyErr_SetString(internal_error.ptr(), (std::string("internal error: ") + e.what()).c_str());
    }
  });
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const galvani::ConfigError& e) {
      PyErr_SetString(config_error.ptr(), e.what());
    } catch (const galvani::ModelError& e) {
      PyErr_SetString(model_error.ptr(), e.what());
    } catch (const galvani::ShapeError& e) {
      PyErr_SetString(shape_error.ptr(), e.what());
    } catch (const galvani::NumericError& e) {
      PyErr_SetString(numeric_error.ptr(), e.what());
    } catch (const galvani::IoError& e) {
      PyErr_SetString(io_error.ptr(), e.what());
    } catch (const galvani::PluginError& e) {
      PyErr_SetString(plugin_error.ptr(), e.what());
    } catch (const galvani::Error& e) {
      PyErr_SetString(error.ptr(), e.what());
    }
  });

  m.def("set_builtin_plugins", [](const std::string& dir) { builtin_plugins() = dir; },
        "the folder of the built-in plugins (set by the package on import)");

  py::class_<Run>(m, "Run")
      .def_property_readonly("results", &Run::results)
      .def_property_readonly("evaluations", &Run::evaluations)
      .def_property_readonly("failures", &Run::failures)
      .def_property_readonly("timings", &Run::timings)
      .def_property_readonly("f_input", &Run::f_input)
      .def_property_readonly("f_baseline", &Run::f_baseline)
      .def_property_readonly("targets", &Run::targets)
      .def_property_readonly("inputs", &Run::inputs)
      .def_property_readonly("baselines", &Run::baselines)
      .def("write", &Run::write, py::arg("dir"));
  py::class_<Planned>(m, "Planned")
      .def("describe", &Planned::describe)
      .def_property_readonly("output_dir", &Planned::output_dir)
      .def("execute", &Planned::execute, py::arg("progress") = py::none());
  py::class_<core::ModelCache>(m, "ModelCache", "a model loaded once and reused by the plans given it")
      .def(py::init<>())
      .def_property_readonly("loads", &core::ModelCache::loads, "how many times a model was loaded");
  m.def("plan_tree", &plan_tree, py::arg("tree"), py::arg("base_dir"), py::arg("source"), py::arg("inputs"),
        py::arg("baselines"), py::arg("target"), py::arg("models") = nullptr);
  m.def("plan_file", &plan_file, py::arg("path"), py::arg("out") = "");
  m.def("layers", &layers, py::arg("model_path"), py::arg("backend") = "torchscript",
        py::arg("example") = py::none(), py::arg("device") = "cpu");
  m.def("plugins", &plugins);
  m.def("component_names", &component_names, py::arg("kind"));
}
