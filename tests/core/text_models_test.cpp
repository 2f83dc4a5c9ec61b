// Token-id models: paths in the embedding's space ([data] path_layer), output elements of tuples and dicts, and
// the errors a user of text models meets. Fixtures: tests/fixtures/make_fixtures.py (text()).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "galvani/core/report.h"
#include "galvani/core/writer.h"
#include "test_support.h"

using galvani::testing::fixture;
using galvani::testing::run_config;
using galvani::testing::run_error;
using galvani::testing::save_script_model;
using galvani::testing::save_temp_tensor;

namespace {

torch::Tensor buffer(const std::string& file, const std::string& name) {
  return torch::jit::load(fixture(file)).attr(name).toTensor();
}

torch::Tensor parameter(const std::string& file, const std::string& name) {
  for (const auto& p : torch::jit::load(fixture(file)).named_parameters())
    if (p.name == name) return p.value.detach().to(torch::kDouble);
  ADD_FAILURE() << "no parameter " << name << " in " << file;
  return {};
}

std::string ids_file(const torch::Tensor& ids, const std::string& name) { return save_temp_tensor(ids, name); }

double max_abs(const torch::Tensor& t) { return t.abs().max().item<double>(); }

const std::string kTextCnn = "text_cnn_scripted.pt";

}  // namespace

// F(ids) = c + V·(W·meanₜ E[idsₜ] + b) is linear in the embeddings, so from the baseline a′ = E[0] at every
// position: IGₜₑ = (VᵀW)ₑ·(aₜₑ − a′ₜₑ)/T, conductance of hidden unit j = Vⱼ·(W·(mean a − mean a′))ⱼ, and both sum to
// F(x) − F(x′) exactly, at any number of steps.
TEST(TextModels, BagOfEmbeddingsClosedForm) {
  const std::string model = fixture("bag_linear_scripted.pt");
  const auto ids = buffer("bag_linear_refs.pt", "input");  // [[1, 2, 3, 2, 0], [4, 4, 9, 0, 0]]
  ASSERT_EQ(ids.scalar_type(), torch::kLong);
  const auto r = run_config("[model]\npath = \"" + model + "\"\ndtype = \"float64\"\n[data]\ninputs = \"" +
                            ids_file(ids, "bag_ids.pt") +
                            "\"\npath_layer = \"embedding\"\nbaselines = \"pad:0\"\ntarget = 1\n"
                            "[[methods]]\nplugin = \"integrated-gradients\"\nsteps = 3\n"
                            "[[methods]]\nplugin = \"conductance\"\nlayers = [\"hidden\"]\nsteps = 3\n");
  const auto E = parameter("bag_linear_scripted.pt", "embedding.weight");
  const auto W = parameter("bag_linear_scripted.pt", "hidden.weight");
  const auto b = parameter("bag_linear_scripted.pt", "hidden.bias");
  const auto V = parameter("bag_linear_scripted.pt", "out.weight");
  const auto c = parameter("bag_linear_scripted.pt", "out.bias");
  const auto a = E.index_select(0, ids.flatten()).view({2, 5, 4});
  const auto a0 = E[0].expand_as(a);
  const double T = 5;
  const auto v1 = V[1];  // target 1
  const auto ig = torch::matmul(v1, W).view({1, 1, 4}) * (a - a0) / T;
  const auto f = [&](const torch::Tensor& e) { return torch::matmul(torch::matmul(e.mean(1), W.t()) + b, v1) + c[1]; };

  ASSERT_TRUE(r.plan.original_inputs.defined());
  EXPECT_EQ(r.plan.inputs.sizes(), (std::vector<std::int64_t>{2, 5, 4}));
  EXPECT_LT(max_abs(r.result.f_input - f(a)), 1e-12);
  EXPECT_LT(max_abs(r.result.f_baseline - f(a0)), 1e-12);
  const auto& igr = r.get("integrated-gradients", "input");
  EXPECT_LT(max_abs(igr.values - ig), 1e-12);
  EXPECT_LT(max_abs(igr.delta), 1e-12);
  const auto cond = v1.view({1, 3}) * torch::matmul(a.mean(1) - a0.mean(1), W.t());
  const auto& cr = r.get("conductance", "hidden");
  EXPECT_LT(max_abs(cr.values - cond), 1e-12);
  EXPECT_LT(max_abs(cr.values.sum(1) - igr.values.sum({1, 2})), 1e-12);

  // Per token: IG summed over the embedding dimension. Equal tokens get equal attributions (mean pooling does not
  // see positions), and the padding token, equal to the baseline token, gets exactly 0.
  ASSERT_TRUE(igr.extras.count("tokens"));
  const auto tokens = igr.extras.at("tokens");
  EXPECT_EQ(tokens.sizes(), (std::vector<std::int64_t>{2, 5}));
  EXPECT_LT(max_abs(tokens - ig.sum(2)), 1e-12);
  EXPECT_EQ(tokens[0][1].item<double>(), tokens[0][3].item<double>());  // id 2 twice
  EXPECT_EQ(tokens[1][0].item<double>(), tokens[1][1].item<double>());  // id 4 twice
  EXPECT_EQ(tokens[0][4].item<double>(), 0.0);
  EXPECT_EQ(tokens[1][3].item<double>(), 0.0);
  EXPECT_GT(max_abs(tokens), 1e-3);  // not all zero
}

namespace {

galvani::testing::Run text_cnn_run(const std::string& model, const std::string& inputs, const std::string& data_extra,
                                   int steps) {
  const auto s = std::to_string(steps);
  return run_config("[model]\npath = \"" + model + "\"\ndtype = \"float64\"\n[data]\ninputs = \"" + inputs +
                    "\"\ntarget = 1\n" + data_extra + "[[methods]]\nplugin = \"integrated-gradients\"\nsteps = " + s +
                    "\n[[methods]]\nplugin = \"conductance\"\nlayers = [\"convs.0\", \"convs.1\", \"convs.2\"]\n"
                    "unit = \"filter\"\nsteps = " + s + "\n");
}

}  // namespace

// The three filter banks together are a cut of the text CNN, so at every path point Σ ∂F/∂y·dy/dα over their
// units is dF/dα: total conductance over all filters equals IG at the embedding at any number of steps, and
// both miss F(x) − F(x′) by the quadrature error (ReLU and max-over-time kinks), which shrinks with steps.
TEST(TextModels, TextCnnFiltersSumToIntegratedGradientsAtTheEmbedding) {
  const auto ids = buffer("text_cnn_tokens.pt", "ids");  // [6, 9], sentence 0 padded with id 0 after 4 tokens
  const auto inputs = ids_file(ids, "cnn_ids.pt");
  std::map<int, double> worst;
  for (int steps : {4, 64}) {
    SCOPED_TRACE(steps);
    const auto r = text_cnn_run(fixture(kTextCnn), inputs, "path_layer = \"embedding\"\nbaselines = \"pad:0\"\n", steps);
    const auto& ig = r.get("integrated-gradients", "input");
    torch::Tensor total = torch::zeros({6}, torch::kDouble);
    for (const char* layer : {"convs.0", "convs.1", "convs.2"}) {
      const auto& c = r.get("conductance", layer);
      EXPECT_EQ(c.values.sizes(), (std::vector<std::int64_t>{6, 4}));  // 4 filters per width
      total += c.values.sum(1);
    }
    EXPECT_LT(max_abs(total - ig.values.sum({1, 2})), 1e-9);
    worst[steps] = max_abs(ig.delta) / max_abs(r.result.f_input - r.result.f_baseline);
  }
  EXPECT_LT(worst[64], worst[4]);
  EXPECT_LT(worst[64], 0.02);
}

// The same computation on the network cut by hand after the embedding (its input: the embeddings): equal.
TEST(TextModels, TextCnnEqualsTheModelCutByHandAfterTheEmbedding) {
  const auto ids = buffer("text_cnn_tokens.pt", "ids");
  const auto embeddings = buffer("text_cnn_tokens.pt", "embeddings");
  for (const auto* model : {"text_cnn_scripted.pt", "text_cnn_traced.pt"}) {
    SCOPED_TRACE(model);
    const auto via_ids = text_cnn_run(fixture(model), ids_file(ids, "cnn_ids2.pt"), "path_layer = \"embedding\"\n", 16);
    const auto cut = text_cnn_run(fixture("text_cnn_cut_scripted.pt"), save_temp_tensor(embeddings, "cnn_emb.pt"), "", 16);
    EXPECT_LT(max_abs(via_ids.plan.inputs - embeddings.to(torch::kDouble)), 1e-6);
    EXPECT_LT(max_abs(via_ids.result.f_input - cut.result.f_input), 1e-6);
    EXPECT_LT(max_abs(via_ids.result.f_baseline - cut.result.f_baseline), 1e-6);
    for (const char* layer : {"convs.0", "convs.1", "convs.2"})
      EXPECT_LT(max_abs(via_ids.get("conductance", layer).values - cut.get("conductance", layer).values), 1e-6) << layer;
    EXPECT_LT(max_abs(via_ids.get("integrated-gradients", "input").values -
                      cut.get("integrated-gradients", "input").values),
              1e-6);
  }
}

// LSTM and GRU classifiers (traced and scripted): the dense layer after the recurrent layer is a cut, so its conductance sums to IG
// at the embedding; the forward through the path layer is the model's own.
TEST(TextModels, LstmAndGruClassifiersTracedAndScripted) {
  for (const std::string model : {"lstm_scripted.pt", "lstm_traced.pt", "gru_scripted.pt", "gru_traced.pt"}) {
    SCOPED_TRACE(model);
    const std::string refs = model.substr(0, model.find('_')) + "_refs.pt";
    const auto ids = buffer(refs, "input");
    const auto reference = buffer(refs, "output");
    // In float32: the traced LSTM records its zero initial state with dtype float32 as a constant.
    const auto r = run_config("[model]\npath = \"" + fixture(model) + "\"\n[data]\ninputs = \"" +
                              ids_file(ids, "rnn_ids.pt") +
                              "\"\npath_layer = \"embedding\"\ntarget = 1\n"
                              "[[methods]]\nplugin = \"integrated-gradients\"\nsteps = 32\n"
                              "[[methods]]\nplugin = \"conductance\"\nlayers = [\"fc\"]\nsteps = 32\n");
    EXPECT_LT(max_abs(r.result.f_input - reference.select(1, 1)), 1e-5);
    const auto& ig = r.get("integrated-gradients", "input");
    EXPECT_LT(max_abs(r.get("conductance", "fc").values.sum(1) - ig.values.sum({1, 2})), 1e-5);
    EXPECT_LT(max_abs(ig.delta), 0.01 * std::max(1e-3, max_abs(r.result.f_input - r.result.f_baseline)));
    EXPECT_EQ(ig.extras.at("tokens").sizes(), ids.sizes());
  }
}

// A traced model records dtypes as constants (nn.LSTM's zero initial state), so converting it fails: the error
// says why and what to do.
TEST(TextModels, DtypeConversionOfATracedLstmExplainsTheConstant) {
  const auto msg = run_error("[model]\npath = \"" + fixture("lstm_traced.pt") + "\"\ndtype = \"float64\"\n[data]\ninputs = \"" +
                             ids_file(buffer("lstm_refs.pt", "input"), "lstm_ids2.pt") +
                             "\"\npath_layer = \"embedding\"\n[[methods]]\nplugin = \"integrated-gradients\"\n");
  EXPECT_NE(msg.find("[model] dtype = \"float64\" converts parameters and buffers, but not the dtypes a traced model "
                     "recorded as constants"),
            std::string::npos)
      << msg;
}

TEST(TextModels, OutputElementsOfTuplesAndDicts) {
  torch::manual_seed(3);
  const auto x = save_temp_tensor(torch::randn({3, 6}), "tuple_x.pt");
  const auto cfg = [&](const std::string& model, const std::string& element) {
    return "[model]\npath = \"" + fixture(model) + "\"\n" + element + "[data]\ninputs = \"" + x +
           "\"\n[[methods]]\nplugin = \"conductance\"\nlayers = [\"hidden\"]\nsteps = 32\n";
  };
  auto msg = run_error(cfg("tuple_out_scripted.pt", ""));
  EXPECT_NE(msg.find("the model returns a tuple of 2 (0: Tensor [1, 3], 1: Tensor [1, 4]); set [model] output_element"),
            std::string::npos)
      << msg;
  msg = run_error(cfg("tuple_out_scripted.pt", "output_element = 2\n"));
  EXPECT_NE(msg.find("output_element = \"2\" is not one of its positions (0 to 1)"), std::string::npos) << msg;
  msg = run_error(cfg("dict_out_scripted.pt", "output_element = \"logit\"\n"));
  EXPECT_NE(msg.find("the model returns a dict {\"logits\": Tensor [1, 3], \"hidden\": Tensor [1, 4]}; it has no key "
                     "\"logit\""),
            std::string::npos)
      << msg;
  msg = run_error(cfg("reuse_relu_scripted.pt", "output_element = 0\n"));
  EXPECT_NE(msg.find("the model returns one Tensor, not a tuple or dict: remove the key"), std::string::npos) << msg;
  msg = run_error(cfg("tuple_out_scripted.pt", "output_element = 1.5\n"));
  EXPECT_NE(msg.find("model.output_element: expected a position (0, 1, …) or a dict key, got"), std::string::npos) << msg;

  // Both pick the logits: same parameters (same seed), same attributions, and complete.
  const auto t = run_config(cfg("tuple_out_scripted.pt", "output_element = 0\n"));
  const auto d = run_config(cfg("dict_out_scripted.pt", "output_element = \"logits\"\n"));
  EXPECT_EQ(t.plan.targets.sizes(), (std::vector<std::int64_t>{3}));
  EXPECT_LT(max_abs(t.get("conductance", "hidden").values - d.get("conductance", "hidden").values), 1e-6);
  // The hidden layer is a cut: complete up to the quadrature error at the ReLU kinks.
  EXPECT_LT(max_abs(t.get("conductance", "hidden").delta), 0.02 * max_abs(t.result.f_input - t.result.f_baseline));
}

TEST(TextModels, BadTokenInputsAreClearErrors) {
  const auto model = fixture(kTextCnn);
  const auto cfg = [&](const torch::Tensor& ids, const std::string& data_extra, const std::string& layers = "convs.0") {
    return "[model]\npath = \"" + model + "\"\n[data]\ninputs = \"" + ids_file(ids, "bad_ids.pt") + "\"\n" + data_extra +
           "[[methods]]\nplugin = \"conductance\"\nlayers = [\"" + layers + "\"]\nsteps = 4\n";
  };
  torch::manual_seed(4);
  auto ids = torch::randint(0, 20, {4, 9}, torch::kLong);
  const std::string embedding = "path_layer = \"embedding\"\n";

  auto msg = run_error(cfg(ids, ""));
  EXPECT_NE(msg.find("holds Long values (token ids?); integer inputs are never interpolated"), std::string::npos) << msg;
  EXPECT_NE(msg.find("set data.path_layer"), std::string::npos) << msg;

  auto high = ids.clone();
  high[2][7] = 25;
  msg = run_error(cfg(high, embedding));
  EXPECT_NE(msg.find("data.inputs holds token id 25 at input 2, position 7 (1 id(s) out of range in all), but the model "
                     "takes ids 0 to 19 (its embedding has 20 rows)"),
            std::string::npos)
      << msg;
  high[0][1] = 30;  // in the first input: the probe itself fails
  msg = run_error(cfg(high, embedding));
  EXPECT_NE(msg.find("token id 30 at input 0, position 1 (2 id(s) out of range in all)"), std::string::npos) << msg;
  auto negative = ids.clone();
  negative[1][0] = -3;
  msg = run_error(cfg(negative, embedding));
  EXPECT_NE(msg.find("negative token id -3 (first at input 1, position 0)"), std::string::npos) << msg;

  msg = run_error(cfg(ids.to(torch::kFloat), ""));
  EXPECT_NE(msg.find("holds Float values, but the model embeds token ids (layer 'embedding' is an Embedding): save the "
                     "ids as integers (torch.long), and set data.path_layer = \"embedding\""),
            std::string::npos)
      << msg;

  msg = run_error(cfg(ids, "path_layer = \"embeding\"\n"));
  EXPECT_NE(msg.find("data.path_layer 'embeding'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("no layer named 'embeding' in the model; closest: embedding"), std::string::npos) << msg;
  msg = run_error(cfg(ids, "path_layer = \"\"\n"));
  EXPECT_NE(msg.find("data.path_layer: empty"), std::string::npos) << msg;

  // A layer before the path layer cannot be attributed along paths that start after it.
  msg = run_error(cfg(ids, "path_layer = \"fc\"\n", "convs.0"));
  EXPECT_NE(msg.find("layer 'convs.0' comes before data.path_layer 'fc' or does not depend on it"), std::string::npos)
      << msg;
  // One filter bank is not a cut: the other two read the embedding, which the stand-in input would feed.
  msg = run_error(cfg(ids, "path_layer = \"convs.0\"\n", "fc"));
  EXPECT_NE(msg.find("data.path_layer 'convs.0': the part of the model after this layer also reads the values of the "
                     "model input"),
            std::string::npos)
      << msg;

  msg = run_error(cfg(ids, embedding + "baselines = \"pad:x\"\n"));
  EXPECT_NE(msg.find("after \"pad:\" comes the token id"), std::string::npos) << msg;
  msg = run_error(cfg(ids, embedding + "baselines = \"pad:20\"\n"));
  EXPECT_NE(msg.find("data.baselines \"pad:20\": holds token id 20"), std::string::npos) << msg;
  const auto short_ids = save_temp_tensor(torch::zeros({4, 5}, torch::kLong), "short_ids.pt");
  msg = run_error(cfg(ids, embedding + "baselines = \"" + short_ids + "\"\n"));
  EXPECT_NE(msg.find("holds token ids of shape [4, 5]; expected the inputs' shape [4, 9] or one sample [9]"),
            std::string::npos)
      << msg;
}

TEST(TextModels, PathLayerBaselinesAsTokenIdsOrInTheLayersSpace) {
  const auto ids = buffer("text_cnn_tokens.pt", "ids");
  const auto inputs = ids_file(ids, "cnn_ids3.pt");
  const auto pad = text_cnn_run(fixture(kTextCnn), inputs, "path_layer = \"embedding\"\nbaselines = \"pad:3\"\n", 4);
  const auto file = text_cnn_run(fixture(kTextCnn), inputs,
                                 "path_layer = \"embedding\"\nbaselines = \"" +
                                     save_temp_tensor(torch::full({9}, 3, torch::kLong), "pad3.pt") + "\"\n",
                                 4);
  EXPECT_LT(max_abs(pad.plan.baselines - file.plan.baselines), 1e-12);
  // Row 3 of the embedding at every position.
  const auto E = parameter(kTextCnn, "embedding.weight");
  EXPECT_LT(max_abs(pad.plan.baselines[2] - E[3].expand({9, 6})), 1e-6);
  const auto zeros = text_cnn_run(fixture(kTextCnn), inputs, "path_layer = \"embedding\"\n", 4);
  EXPECT_EQ(max_abs(zeros.plan.baselines), 0.0);
  const auto layer_space = text_cnn_run(
      fixture(kTextCnn), inputs,
      "path_layer = \"embedding\"\nbaselines = \"" + save_temp_tensor(E[3].expand({9, 6}).contiguous(), "e3.pt") + "\"\n",
      4);
  EXPECT_LT(max_abs(layer_space.plan.baselines - pad.plan.baselines), 1e-6);
  EXPECT_LT(max_abs(layer_space.result.f_baseline - pad.result.f_baseline), 1e-6);
  const auto msg = run_error("[model]\npath = \"" + fixture("text_cnn_cut_scripted.pt") + "\"\n[data]\ninputs = \"" +
                             save_temp_tensor(torch::randn({2, 9, 6}), "emb_in.pt") +
                             "\"\nbaselines = \"pad:0\"\n[[methods]]\nplugin = \"conductance\"\nlayers = [\"fc\"]\n");
  EXPECT_NE(msg.find("\"pad:0\" replaces token ids, but these inputs are not token ids"), std::string::npos) << msg;
}

TEST(TextModels, PathLayerTheOutputDoesNotDependOn) {
  const auto model = save_script_model("side", {{"a", "def forward(self, x):\n  return x * 2.0\n"},
                                                {"b", "def forward(self, x):\n  return x + 1.0\n"}},
                                       "def forward(self, x):\n  y = self.b.forward(x)\n  return self.a.forward(x)\n");
  const auto msg = run_error("[model]\npath = \"" + model + "\"\n[data]\ninputs = \"" +
                             save_temp_tensor(torch::randn({2, 3}), "side_x.pt") +
                             "\"\npath_layer = \"b\"\n[[methods]]\nplugin = \"integrated-gradients\"\n");
  EXPECT_NE(msg.find("data.path_layer 'b': the model's output does not depend on this layer's output"),
            std::string::npos)
      << msg;
}

// Shapley values of the filters of one bank, exactly (4 players), through the tail after it. The scripted text
// CNN builds its pooled list by appending in an unrolled loop: the tail must keep the other banks' entries (a
// cut that dropped the appends once emptied the list). Scripted and traced agree, and efficiency holds.
TEST(TextModels, ShapleyOverFiltersThroughTheTailScriptedAndTraced) {
  const auto ids = ids_file(buffer("text_cnn_tokens.pt", "ids"), "cnn_ids4.pt");
  std::map<std::string, torch::Tensor> values;
  for (const auto* model : {"text_cnn_scripted.pt", "text_cnn_traced.pt"}) {
    SCOPED_TRACE(model);
    const auto r = run_config("[model]\npath = \"" + fixture(model) + "\"\ndtype = \"float64\"\n[data]\ninputs = \"" +
                              ids + "\"\npath_layer = \"embedding\"\nbaselines = \"pad:0\"\ntarget = 1\n"
                              "[[methods]]\nplugin = \"shapley-sampling\"\nlayers = [\"convs.1\"]\nunit = \"filter\"\n"
                              "exact = true\n");
    const auto& s = r.get("shapley-sampling", "convs.1");
    EXPECT_EQ(s.values.sizes(), (std::vector<std::int64_t>{6, 4}));
    EXPECT_LT(max_abs(s.extras.at("efficiency")), 1e-9);
    EXPECT_GT(max_abs(s.values), 1e-4);
    values[model] = s.values;
  }
  EXPECT_LT(max_abs(values["text_cnn_scripted.pt"] - values["text_cnn_traced.pt"]), 1e-9);
}

TEST(TextModels, VocabularyMustNameEveryTokenOfTokenIdInputs) {
  const auto ids = ids_file(buffer("text_cnn_tokens.pt", "ids"), "cnn_ids5.pt");
  const auto vocab = [](int lines) {
    const auto path = galvani::testing::temp_dir() + "/vocab" + std::to_string(lines) + ".txt";
    std::ofstream out(path);
    for (int i = 0; i < lines; ++i) out << "w" << i << "\n";
    return path;
  };
  const auto cfg = [&](const std::string& inputs, const std::string& data_extra) {
    return "[model]\npath = \"" + fixture(kTextCnn) + "\"\n[data]\ninputs = \"" + inputs + "\"\n" + data_extra +
           "[[methods]]\nplugin = \"integrated-gradients\"\nsteps = 4\n";
  };
  auto msg = run_error(cfg(ids, "path_layer = \"embedding\"\nvocabulary = \"" + vocab(5) + "\"\n"));
  EXPECT_NE(msg.find("has 5 tokens (lines), but data.inputs holds token id 19"), std::string::npos) << msg;
  msg = run_error(cfg(ids, "path_layer = \"embedding\"\nvocabulary = \"/nonexistent/vocab.txt\"\n"));
  EXPECT_NE(msg.find("data.vocabulary: cannot read '/nonexistent/vocab.txt'"), std::string::npos) << msg;
  msg = run_error("[model]\npath = \"" + fixture("text_cnn_cut_scripted.pt") + "\"\n[data]\ninputs = \"" +
                  save_temp_tensor(torch::randn({2, 9, 6}), "emb_in2.pt") + "\"\nvocabulary = \"" + vocab(20) +
                  "\"\n[[methods]]\nplugin = \"integrated-gradients\"\n");
  EXPECT_NE(msg.find("data.vocabulary: names the tokens of integer token-id inputs"), std::string::npos) << msg;

  // Labels: the words, trailing padding (id 0 here) left out; sentence 0 is padded after 4 tokens.
  const auto r = run_config(cfg(ids, "path_layer = \"embedding\"\nvocabulary = \"" + vocab(20) + "\"\n"));
  const auto raw = buffer("text_cnn_tokens.pt", "ids");
  ASSERT_EQ(r.plan.input_labels.size(), 6u);
  std::string first;
  for (int j = 0; j < 4; ++j) first += (j ? " w" : "w") + std::to_string(raw[0][j].item<std::int64_t>());
  EXPECT_EQ(r.plan.input_labels[0], first);
}

// The bundled sentiment example (docs/examples/sentiment.toml, model trained by train_sentiment.py): it runs,
// its study finds what docs/results.md says, and the report shows the tables, the sign maps and coloured text.
TEST(TextModels, SentimentExampleStudy) {
  const std::string examples = std::string(GALVANI_SOURCE_DIR) + "/docs/examples";
  std::ifstream in(examples + "/sentiment.toml");
  const std::string toml((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto r = run_config(toml, examples);
  ASSERT_TRUE(r.result.complete());
  ASSERT_EQ(r.plan.input_labels.size(), 408u);
  EXPECT_EQ(r.plan.input_labels[0], "this is not good");
  EXPECT_EQ(r.plan.input_labels[1], "this is not bad");
  EXPECT_EQ(r.plan.targets[0].item<std::int64_t>(), 0);  // negative
  EXPECT_EQ(r.plan.targets[1].item<std::int64_t>(), 1);  // positive
  // Completeness at the filters (all four banks form a cut) and at the embedding: within 2 % of F(x) − F(x′).
  const auto& ig = r.get("integrated-gradients", "input");
  torch::Tensor total = torch::zeros({408}, torch::kDouble);
  for (const char* layer : {"convs.0", "convs.1", "convs.2", "convs.3"})
    total += r.get("conductance", layer).values.to(torch::kDouble).sum(1);
  const auto gap = (r.result.f_input - r.result.f_baseline).to(torch::kDouble);
  EXPECT_LT(((total - gap).abs() / gap.abs().clamp_min(1)).max().item<double>(), 0.02);
  EXPECT_LT(((ig.values.to(torch::kDouble).sum({1, 2}) - gap).abs() / gap.abs().clamp_min(1)).max().item<double>(), 0.02);
  // The top filters of width 3 differ between "not good" and "not bad": a division of labour.
  const auto c0 = r.get("conductance", "convs.0").values;
  EXPECT_NE(c0[0].argmax().item<std::int64_t>(), c0[1].argmax().item<std::int64_t>());

  const auto dir = galvani::testing::temp_dir() + "/sentiment";
  galvani::core::write_results(r.plan, r.result, dir);
  std::ifstream md(dir + "/report.md");
  const std::string report((std::istreambuf_iterator<char>(md)), std::istreambuf_iterator<char>());
  EXPECT_NE(report.find("## Token attributions"), std::string::npos);
  EXPECT_NE(report.find("- input 0 (target 0): this("), std::string::npos);
  EXPECT_NE(report.find("unit-examples: top-units.conductance.convs.0"), std::string::npos);
  EXPECT_NE(report.find("| 0 | this is not good | 1 |"), std::string::npos);
  if (galvani::core::report_has_figures())
    EXPECT_TRUE(std::filesystem::exists(dir + "/plots/unit-examples-sign_map-convs.0-conductance.png"));
  EXPECT_TRUE(std::filesystem::exists(dir + "/tables/unit-examples/sign map.convs.0.conductance.pt"));
  EXPECT_TRUE(std::filesystem::exists(dir + "/attributions/integrated-gradients/input.tokens.pt"));
}

// DeepLIFT through the path layer: the op sites after the embedding, with the embedding's output as the input.
// Equal to DeepLIFT on the network cut by hand, with the padding token's embedding as the reference.
TEST(TextModels, DeepLiftWithThePaddingTokenAsReferenceEqualsTheCutModel) {
  const auto ids = buffer("text_cnn_tokens.pt", "ids");
  const auto E = parameter(kTextCnn, "embedding.weight");
  const auto embeddings = buffer("text_cnn_tokens.pt", "embeddings");
  const auto reference = E[0].expand({9, 6}).contiguous().to(torch::kFloat);
  const std::string methods =
      "[[methods]]\nplugin = \"deeplift\"\nlayers = [\"convs.0\", \"convs.1\", \"convs.2\"]\nunit = \"filter\"\n"
      "input = true\nunsupported = \"gradient\"\n";
  const auto via_ids = run_config("[model]\npath = \"" + fixture(kTextCnn) + "\"\ndtype = \"float64\"\n[data]\ninputs = \"" +
                                  ids_file(ids, "dl_ids.pt") +
                                  "\"\npath_layer = \"embedding\"\nbaselines = \"pad:0\"\ntarget = 1\n" + methods);
  const auto cut = run_config("[model]\npath = \"" + fixture("text_cnn_cut_scripted.pt") +
                              "\"\ndtype = \"float64\"\n[data]\ninputs = \"" + save_temp_tensor(embeddings, "dl_emb.pt") +
                              "\"\nbaselines = \"" + save_temp_tensor(reference, "dl_ref.pt") + "\"\ntarget = 1\n" +
                              methods);
  for (const char* layer : {"convs.0", "convs.1", "convs.2", "input"}) {
    SCOPED_TRACE(layer);
    const auto& a = via_ids.get("deeplift", layer);
    const auto& b = cut.get("deeplift", layer);
    EXPECT_LT(max_abs(a.values - b.values), 1e-6);
    EXPECT_GT(max_abs(a.values), 1e-3);
  }
  EXPECT_TRUE(via_ids.plan.model->capabilities().operations);
  // With every op site after the embedding DeepLIFT's, the input contributions sum to F(x) − F(x′).
  EXPECT_LT(max_abs(via_ids.get("deeplift", "input").delta), 1e-6 * std::max(1.0, max_abs(via_ids.result.f_input)));
}

// A transformer encoder classifier (traced and scripted): positions come from the ids' length only, so the
// embedding is a cut; the attention output (encoder.dropout1) and the MLP neurons (encoder.linear1) are layers,
// shapes probed without gradients (where PyTorch would take its fused kernel), and the encoder's output is a cut,
// so its total conductance equals IG at the embedding.
TEST(TextModels, TransformerEncoderTracedAndScripted) {
  const auto ids = buffer("transformer_refs.pt", "input");
  const auto reference = buffer("transformer_refs.pt", "output");
  for (const auto* model : {"transformer_scripted.pt", "transformer_traced.pt"}) {
    SCOPED_TRACE(model);
    const auto r = run_config("[model]\npath = \"" + fixture(model) + "\"\n[data]\ninputs = \"" +
                              ids_file(ids, "tf_ids.pt") +
                              "\"\npath_layer = \"embedding\"\ntarget = 1\n"
                              "[[methods]]\nplugin = \"integrated-gradients\"\nsteps = 32\n"
                              "[[methods]]\nplugin = \"conductance\"\nlayers = [\"encoder\", \"encoder.dropout1\", "
                              "\"encoder.linear1\"]\nsteps = 32\n");
    EXPECT_LT(max_abs(r.result.f_input - reference.select(1, 1)), 1e-5);
    const auto& ig = r.get("integrated-gradients", "input");
    EXPECT_LT(max_abs(r.get("conductance", "encoder").values.sum({1, 2}) - ig.values.sum({1, 2})), 1e-4);
    EXPECT_EQ(r.get("conductance", "encoder.linear1").values.sizes(), (std::vector<std::int64_t>{2, 6, 16}));
    EXPECT_EQ(r.get("conductance", "encoder.dropout1").values.sizes(), (std::vector<std::int64_t>{2, 6, 8}));
    // The position embedding reads only the length: beside the path, not on it.
    const auto msg = run_error("[model]\npath = \"" + fixture(model) + "\"\n[data]\ninputs = \"" +
                               ids_file(ids, "tf_ids2.pt") +
                               "\"\npath_layer = \"embedding\"\n[[methods]]\nplugin = \"conductance\"\n"
                               "layers = [\"position\"]\n");
    EXPECT_NE(msg.find("layer 'position' comes before data.path_layer 'embedding' or does not depend on it"),
              std::string::npos)
        << msg;
  }
}

// Input degradation on token-id inputs removes whole tokens (every embedding value of a token, replaced by the
// baseline token's), most relevant first by the per-token sum: its first step is the model with the top token
// replaced, computed here by hand.
TEST(TextModels, InputDegradationRemovesWholeTokens) {
  const auto ids = buffer("text_cnn_tokens.pt", "ids");
  const auto r = run_config("[model]\npath = \"" + fixture(kTextCnn) + "\"\ndtype = \"float64\"\n[data]\ninputs = \"" +
                            ids_file(ids, "deg_ids.pt") +
                            "\"\npath_layer = \"embedding\"\nbaselines = \"pad:3\"\ntarget = 1\n"
                            "[[methods]]\nplugin = \"integrated-gradients\"\nsteps = 16\n"
                            "[[evaluators]]\nplugin = \"input-degradation\"\nsteps = 9\n");
  const galvani::Evaluation* ev = nullptr;
  for (const auto& [name, e] : r.result.evaluations)
    if (name == "input-degradation") ev = &e;
  ASSERT_NE(ev, nullptr);
  const galvani::Curve* morf = nullptr;
  for (const auto& c : ev->curves)
    if (c.method == "integrated-gradients" && c.name == "MoRF") morf = &c;
  ASSERT_NE(morf, nullptr);
  ASSERT_EQ(morf->x.size(), 10u);  // 0 to 9 of the 9 tokens
  EXPECT_NEAR(morf->x[1], 1.0 / 9, 1e-12);
  const auto tokens = r.get("integrated-gradients", "input").extras.at("tokens");
  const auto top = tokens.argmax(1);
  auto x1 = r.plan.inputs.clone();
  for (std::int64_t i = 0; i < x1.size(0); ++i) x1[i][top[i].item<std::int64_t>()] = r.plan.baselines[i][0];
  torch::NoGradGuard no_grad;
  const auto f1 = r.plan.model->forward(x1).select(1, 1);
  EXPECT_NEAR(morf->y[1], (r.result.f_input - f1).mean().item<double>(), 1e-9);
  // All tokens removed: the baseline sentence.
  EXPECT_NEAR(morf->y[9], (r.result.f_input - r.result.f_baseline).mean().item<double>(), 1e-9);
}

// Tokens as Shapley players: the path layer as the layer, one group mask per token. Exactly (9 players), the
// values sum to F(x) − F(x′), and a padding token equal to the baseline token is a null player.
TEST(TextModels, ShapleyWithTokensAsPlayers) {
  const auto ids = buffer("text_cnn_tokens.pt", "ids");  // sentence 0: tokens 4 to 8 are padding (id 0)
  auto groups = torch::zeros({9, 9, 6});
  for (int t = 0; t < 9; ++t) groups[t][t].fill_(1);
  const auto r = run_config("[model]\npath = \"" + fixture(kTextCnn) + "\"\ndtype = \"float64\"\n[data]\ninputs = \"" +
                            ids_file(ids, "sh_ids.pt") +
                            "\"\npath_layer = \"embedding\"\nbaselines = \"pad:0\"\ntarget = 1\n"
                            "[[methods]]\nplugin = \"shapley-sampling\"\nlayers = [\"embedding\"]\ngroups = \"" +
                            save_temp_tensor(groups, "token_groups.pt") + "\"\nexact = true\n");
  const auto& s = r.get("shapley-sampling", "embedding");
  ASSERT_EQ(s.values.sizes(), (std::vector<std::int64_t>{6, 9}));
  EXPECT_LT(max_abs(s.values.sum(1) - (r.result.f_input - r.result.f_baseline)), 1e-9);
  for (int t = 4; t < 9; ++t) EXPECT_LT(std::abs(s.values[0][t].item<double>()), 1e-12) << t;
  EXPECT_GT(max_abs(s.values[0].narrow(0, 0, 4)), 1e-3);
}

// Points of the wrong shape for the path layer are a ShapeError naming it, from the plain forward (no layers
// tapped) as from a tapped one.
TEST(TextModels, PointsOfTheWrongShapeNameThePathLayer) {
  const auto r = text_cnn_run(fixture(kTextCnn), ids_file(buffer("text_cnn_tokens.pt", "ids"), "shape_ids.pt"),
                              "path_layer = \"embedding\"\n", 4);
  const auto wrong = torch::zeros({2, 5, 6}, torch::kDouble);
  for (int tapped = 0; tapped < 2; ++tapped) {
    try {
      if (tapped)
        (void)r.plan.model->tapped({"convs.0"})->forward(wrong, [](std::size_t, const torch::Tensor& y) { return y; });
      else
        (void)r.plan.model->forward(wrong);
      ADD_FAILURE() << "no error";
    } catch (const galvani::ShapeError& e) {
      EXPECT_NE(std::string(e.what()).find("inputs in the space of layer 'embedding' have shape [2, 5, 6] but the "
                                           "layer's output has [2, 9, 6]"),
                std::string::npos)
          << e.what();
    }
  }
}
