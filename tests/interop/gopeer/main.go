// Command gopeer is an independent Noise_IK peer for interoperability tests.
// It speaks the Storj "DRPC over Noise" wire (route prefix, then frames of
// 0x80 and a 24-bit length) with github.com/flynn/noise doing the Noise
// handshake and the AEAD, so that it shares no code with the C side.
package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/flynn/noise"
	"golang.org/x/crypto/curve25519"
)

const usageText = `usage:
  gopeer respond --listen ADDR (--key HEX | --key-file PATH) [--suite chachapoly|aesgcm]
                 [--mode echo|slowecho|http|banner] [--prefix P] [--http-dir DIR]
  gopeer initiate --connect ADDR --remote-pub HEX --size N [--suite S]
                  [--key HEX | --key-file PATH] [--prefix P] [--report-msg2]
  gopeer keygen
  gopeer vector TRANSCRIPT
`

// errUsage marks command-line mistakes, which exit with status 2.
var errUsage = errors.New("bad usage")

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usageText)
		os.Exit(2)
	}
	commands := map[string]func([]string) error{
		"respond":  runRespond,
		"initiate": runInitiate,
		"keygen":   runKeygen,
		"vector":   runVector,
	}
	command, ok := commands[os.Args[1]]
	if !ok {
		fmt.Fprint(os.Stderr, usageText)
		os.Exit(2)
	}
	if err := command(os.Args[2:]); err != nil {
		if errors.Is(err, errUsage) || errors.Is(err, flag.ErrHelp) {
			if !errors.Is(err, flag.ErrHelp) {
				fmt.Fprintln(os.Stderr, "gopeer:", err)
			}
			os.Exit(2)
		}
		fmt.Fprintln(os.Stderr, "gopeer:", err)
		os.Exit(1)
	}
}

func usageError(format string, args ...interface{}) error {
	return fmt.Errorf("%w: %s", errUsage, fmt.Sprintf(format, args...))
}

// parseFlags parses args, treating leftover positional arguments as a
// mistake: a misspelled value would otherwise be silently ignored.
func parseFlags(flags *flag.FlagSet, args []string) error {
	if err := flags.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if flags.NArg() > 0 {
		return usageError("unexpected argument %q", flags.Arg(0))
	}
	return nil
}

func suiteByName(name string) (noise.CipherSuite, error) {
	switch name {
	case "chachapoly":
		return noise.NewCipherSuite(noise.DH25519, noise.CipherChaChaPoly, noise.HashBLAKE2b), nil
	case "aesgcm":
		return noise.NewCipherSuite(noise.DH25519, noise.CipherAESGCM, noise.HashBLAKE2b), nil
	}
	return nil, usageError("unknown suite %q (want chachapoly or aesgcm)", name)
}

func protocolName(suite noise.CipherSuite) string {
	return "Noise_IK_" + string(suite.Name())
}

// parseKey decodes a 32-byte key written as 64 hex digits.
func parseKey(text, what string) ([]byte, error) {
	key, err := hex.DecodeString(text)
	if err != nil || len(key) != 32 {
		return nil, usageError("%s must be 64 hex digits", what)
	}
	return key, nil
}

func keypairFromPrivate(private []byte) (noise.DHKey, error) {
	public, err := curve25519.X25519(private, curve25519.Basepoint)
	if err != nil {
		return noise.DHKey{}, err
	}
	return noise.DHKey{Private: private, Public: public}, nil
}

// staticKeyFlags are the two ways to give a static private key.
type staticKeyFlags struct {
	hexKey  string
	keyFile string
}

func (k *staticKeyFlags) register(flags *flag.FlagSet) {
	flags.StringVar(&k.hexKey, "key", "", "static private key, 64 hex digits")
	flags.StringVar(&k.keyFile, "key-file", "", "file holding the static private key as 64 hex digits")
}

func (k *staticKeyFlags) given() bool {
	return k.hexKey != "" || k.keyFile != ""
}

func (k *staticKeyFlags) load() (noise.DHKey, error) {
	if k.hexKey != "" && k.keyFile != "" {
		return noise.DHKey{}, usageError("give --key or --key-file, not both")
	}
	text := k.hexKey
	what := "--key"
	if k.keyFile != "" {
		contents, err := os.ReadFile(k.keyFile)
		if err != nil {
			return noise.DHKey{}, err
		}
		text = strings.TrimSpace(string(contents))
		what = "the content of " + k.keyFile
	}
	private, err := parseKey(text, what)
	if err != nil {
		return noise.DHKey{}, err
	}
	return keypairFromPrivate(private)
}

func runKeygen(args []string) error {
	flags := flag.NewFlagSet("keygen", flag.ContinueOnError)
	if err := parseFlags(flags, args); err != nil {
		return err
	}
	keypair, err := noise.DH25519.GenerateKeypair(rand.Reader)
	if err != nil {
		return err
	}
	fmt.Printf("priv=%x pub=%x\n", keypair.Private, keypair.Public)
	return nil
}
