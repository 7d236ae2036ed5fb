"""How runs name the machine they trained on (docs tables, the report, the models page)."""

from models.machine import describe_machine, trained_on


def test_a_run_names_its_processor_or_its_gpu():
    amd = {"machine": "AMD EPYC, 2 cores, avx512_bf16, 24 GiB RAM, Linux x86_64"}
    xeon = {"machine": "Intel(R) Xeon(R) Processor, 2 cores, avx512_bf16, 24 GiB RAM, Linux x86_64", "device": "cpu"}
    gpu = {"machine": "Intel(R) Xeon(R) Processor, 16 cores, amx_bf16, 126 GiB RAM, Linux x86_64, NVIDIA H200",
           "device": "cuda"}
    assert trained_on(amd) == "AMD EPYC"
    assert trained_on(xeon) == "Intel Xeon"
    assert trained_on(gpu) == "NVIDIA H200"
    assert trained_on({}) is None


def test_this_machine_is_described_with_its_cores():
    parts = describe_machine().split(", ")
    assert parts[1].endswith(" cores") and int(parts[1].split()[0]) >= 1
    assert trained_on({"machine": describe_machine()}) == parts[0].replace("(R)", "").replace(" Processor", "").strip()
