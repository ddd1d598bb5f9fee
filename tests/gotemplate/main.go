// Renders a Go text/template (Ollama's TEMPLATE syntax) with JSON data from stdin: the tests' check that an
// exported Modelfile's template gives the same text as the tokenizer's chat template. Go's own template engine,
// no imitation: `go run . TEMPLATE_FILE < data.json`.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"text/template"
)

func main() {
	src, err := os.ReadFile(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var data map[string]interface{}
	if err := json.NewDecoder(os.Stdin).Decode(&data); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	t, err := template.New("t").Parse(string(src))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(3)
	}
	if err := t.Execute(os.Stdout, data); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(4)
	}
}
