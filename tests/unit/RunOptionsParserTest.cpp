//===- RunOptionsParserTest.cpp - the run options mergec and executables share -===//
#include "mergec/Runtime/RunOptionsParser.h"
#include <gtest/gtest.h>

using namespace mergec::rt;

TEST(RunOptionsParser, KnowsEachOptionAndItsArity) {
  for (const char *flag : {"--force", "--quiet", "--strict", "--verbose", "--json"})
    EXPECT_EQ(runOptionArity(flag), RunOptionArity::Flag) << flag;
  for (const char *option : {"--dtype", "--threads", "--shard-size", "--max-memory",
                             "--max-gpu-memory", "--device"})
    EXPECT_EQ(runOptionArity(option), RunOptionArity::Value) << option;
  for (const char *other : {"-o", "--model", "--set", "--emit", "--help", "--thread"})
    EXPECT_EQ(runOptionArity(other), RunOptionArity::NotARunOption) << other;
}

TEST(RunOptionsParser, AppliesValues) {
  RunOptions o;
  EXPECT_EQ(applyRunOption("--dtype", "bf16", o), "");
  EXPECT_EQ(o.dtype, DType::BF16);
  EXPECT_EQ(applyRunOption("--threads", "12", o), "");
  EXPECT_EQ(o.threads, 12u);
  EXPECT_EQ(applyRunOption("--shard-size", "500MiB", o), "");
  EXPECT_EQ(o.shardSize, 500ull << 20);
  EXPECT_EQ(applyRunOption("--max-gpu-memory", "8GB", o), "");
  EXPECT_EQ(o.maxGpuMemory, 8'000'000'000ull);
  EXPECT_EQ(applyRunOption("--device", "cuda", o), "");
  EXPECT_EQ(o.device, DeviceKind::CUDA);
  EXPECT_EQ(applyRunOption("--strict", std::nullopt, o), "");
  EXPECT_TRUE(o.strict);
  EXPECT_EQ(runOptionArity("--resume"), RunOptionArity::Flag);
  EXPECT_EQ(applyRunOption("--resume", std::nullopt, o), "");
  EXPECT_TRUE(o.resume);
  EXPECT_EQ(applyRunOption("--resume", "yes", o), "--resume takes no value");
  EXPECT_FALSE(o.json);
  EXPECT_EQ(applyRunOption("--json", std::nullopt, o), "");
  EXPECT_TRUE(o.json);
  EXPECT_EQ(applyRunOption("--json", "yes", o), "--json takes no value");
}

TEST(RunOptionsParser, RefusesWithOneMessageEach) {
  RunOptions o;
  EXPECT_EQ(applyRunOption("--dtype", "f64", o), "--dtype must be f32, bf16 or f16");
  EXPECT_EQ(applyRunOption("--dtype", std::nullopt, o), "--dtype must be f32, bf16 or f16");
  EXPECT_EQ(applyRunOption("--threads", "2x", o), "--threads: '2x' is not a number from 1 to 1024");
  EXPECT_EQ(applyRunOption("--threads", "0", o), "--threads: '0' is not a number from 1 to 1024");
  EXPECT_EQ(applyRunOption("--threads", std::nullopt, o), "--threads needs a number from 1 to 1024");
  EXPECT_EQ(applyRunOption("--max-memory", "lots", o),
            "--max-memory: 'lots' is not a size (e.g. 16GB)");
  EXPECT_EQ(applyRunOption("--shard-size", "0", o),
            "--shard-size: '0' is not a size (e.g. 5GB, 500MiB)");
  EXPECT_EQ(applyRunOption("--device", "tpu", o), "--device must be one of: cpu, cuda");
  EXPECT_EQ(applyRunOption("--force", "yes", o), "--force takes no value");
  EXPECT_FALSE(o.force);
}

TEST(RunOptionsParser, EmitLoraAndItsOptions) {
  for (const char *option : {"--emit-lora", "--sv-epsilon", "--lora-targets"})
    EXPECT_EQ(runOptionArity(option), RunOptionArity::Value) << option;
  RunOptions o;
  EXPECT_EQ(checkRunOptions(o), "");
  EXPECT_EQ(applyRunOption("--sv-epsilon", "1e-3", o), "");
  EXPECT_EQ(o.emitLora.svEpsilon, 1e-3);
  EXPECT_EQ(checkRunOptions(o), "--sv-epsilon applies to --emit-lora RANK");
  EXPECT_EQ(applyRunOption("--emit-lora", "16", o), "");
  EXPECT_EQ(o.emitLora.rank, 16);
  EXPECT_EQ(checkRunOptions(o), "");
  // Commas inside braces belong to the glob's alternatives.
  EXPECT_EQ(applyRunOption("--lora-targets", "*.{q,v}_proj.weight,lm_head.weight", o), "");
  EXPECT_EQ(o.emitLora.targets,
            (std::vector<std::string>{"*.{q,v}_proj.weight", "lm_head.weight"}));
  EXPECT_EQ(applyRunOption("--emit-lora", "0", o),
            "--emit-lora: '0' is not a rank (a whole number from 1 to 65536)");
  EXPECT_EQ(applyRunOption("--emit-lora", "65537", o),
            "--emit-lora: '65537' is not a rank (a whole number from 1 to 65536)");
  EXPECT_EQ(applyRunOption("--emit-lora", "8x", o),
            "--emit-lora: '8x' is not a rank (a whole number from 1 to 65536)");
  EXPECT_EQ(o.emitLora.rank, 16);
  EXPECT_EQ(applyRunOption("--sv-epsilon", "-0.5", o),
            "--sv-epsilon: '-0.5' is not a number >= 0 (singular values at or below it are "
            "dropped)");
  EXPECT_EQ(applyRunOption("--lora-targets", "a,", o), "--lora-targets: 'a,' has an empty glob");
  o.resume = true;
  EXPECT_EQ(checkRunOptions(o),
            "--emit-lora cannot --resume (an adapter is written in one piece at the end)");
  o.resume = false;
  o.device = DeviceKind::CUDA;
  EXPECT_EQ(checkRunOptions(o),
            "--emit-lora runs on the CPU (its SVDs are LAPACK's), not --device cuda");
}
