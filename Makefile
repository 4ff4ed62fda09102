# voidbox: build, test, lint, demo. Every target works on a fresh Debian 12 machine.
GO        ?= go
BIN       := bin
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
export PATH := /usr/local/go/bin:$(PATH)

.PHONY: all setup build guest agent test test-debian-kernel test-short lint fmt demo bench clean

all: build

setup:
	bash scripts/setup.sh

# voidbox itself, and the guest agent as a static binary next to it (guest build finds it there).
build:
	$(GO) build -o $(BIN)/voidbox .
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags='-s -w' -o $(BIN)/voidbox-agent ./guest-agent

# Kernel + initramfs under ~/.voidbox/guest (reproducible; cached). The first build
# compiles the guest kernel (a few minutes; cached under ~/.voidbox/kernels).
guest: build
	$(BIN)/voidbox guest build

# claude-code for agent stages and its root disk (cached under ~/.voidbox/agents; the
# first build bootstraps Debian, about a minute), before any agent box needs them.
agent: build
	$(BIN)/voidbox agent install --root-disk

# Everything: unit tests, fuzz seed corpora, and the suites that boot real microVMs.
test: setup contracts guest agent
	$(GO) test -count=1 -timeout 40m ./...
	$(MAKE) test-debian-kernel

# The smaller VM job on Debian's cloud kernel (modules loaded by the agent): the
# guest basics, the agent and the QEMU channel, booted on that kernel.
test-debian-kernel: setup guest
	VOIDBOX_TEST_KERNEL=debian $(GO) test -count=1 -timeout 20m -run 'TestGuestBasics|TestAgentInRealVM|TestBootAgentChannel|TestSmallestBoxBoots|TestPrivateSecretAndOneSessionInRealVM|TestStageSeccompInRealVM|TestNetworkInRealVM|TestFileSystemsInRealVM|TestForwardInRealVM' ./sandbox/vm ./guest-agent ./qemu

# Fast tests only: no VM boots.
test-short: contracts
	$(GO) test -short -count=1 ./...

# Cloud Hypervisor's OpenAPI description that the chv tests validate against: ../shared/contracts
# if present, else downloaded at the pinned commit into ~/.cache/voidbox/contracts (sha256-checked).
.PHONY: contracts
contracts:
	bash scripts/contracts.sh

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

fmt:
	gofmt -w $$(git ls-files '*.go')
	$(BIN)/voidbox fmt $$(git ls-files '*.star' ':!:**/testdata/**')

# The main job: one real microVM stage.
demo: setup guest
	$(BIN)/voidbox exec examples/hello.star

bench: guest
	$(BIN)/voidbox bench boot

clean:
	rm -rf $(BIN)
