// Command helm-readme regenerates the parameter table of a chart's README.md from
// the `## @param` comments of its values.yaml.
//
//	go run ./cmd/helm-readme -chart ../../helm/cner          rewrite README.md
//	go run ./cmd/helm-readme -chart ../../helm/cner -check   exit 1 when it is stale
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"cner/test/helm/params"
)

func main() {
	chart := flag.String("chart", "../../helm/cner", "chart directory")
	check := flag.Bool("check", false, "only check that README.md is up to date")
	flag.Parse()
	if err := run(*chart, *check); err != nil {
		fmt.Fprintln(os.Stderr, "helm-readme:", err)
		os.Exit(1)
	}
}

func run(chart string, check bool) error {
	text, err := os.ReadFile(filepath.Join(chart, "values.yaml"))
	if err != nil {
		return err
	}
	values, err := params.Parse(text)
	if err != nil {
		return err
	}
	if problems := values.Problems(); len(problems) > 0 {
		for _, p := range problems {
			fmt.Fprintln(os.Stderr, p)
		}
		return fmt.Errorf("%d problem(s) in the @param comments", len(problems))
	}
	readmePath := filepath.Join(chart, "README.md")
	readme, err := os.ReadFile(readmePath)
	if err != nil {
		return err
	}
	updated, err := params.UpdateReadme(string(readme), values.Table())
	if err != nil {
		return err
	}
	if updated == string(readme) {
		fmt.Printf("%s is up to date (%d parameters)\n", readmePath, len(values.Params))
		return nil
	}
	if check {
		return fmt.Errorf("%s is stale: run `bash scripts/test-helm.sh --update-readme`", readmePath)
	}
	if err := os.WriteFile(readmePath, []byte(updated), 0o644); err != nil {
		return err
	}
	fmt.Printf("wrote %s (%d parameters)\n", readmePath, len(values.Params))
	return nil
}
