// Command helm_render renders a Helm chart the way `helm template` does, for tests on machines without
// Helm: Go's text/template with sprig and Helm's own extra functions (include, tpl, required, toYaml,
// lookup...). It is a test tool, not a Helm replacement: no subcharts, no .Files, no --set, no schema
// validation (the Python tests validate values.schema.json with jsonschema).
//
// Build offline with Debian's Go packages (golang-go, golang-github-masterminds-sprig-dev,
// golang-gopkg-yaml.v2-dev), in GOPATH mode:
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go build -o /tmp/helm_render ./tools/helm_render
//
// Usage:
//
//	helm_render [-name RELEASE] [-namespace NS] [-f values.yaml]... [-notes FILE] [-include-crds] CHART_DIR
//
// The manifests go to stdout, each file after "---" and a "# Source: <chart>/templates/<file>" line.
// NOTES.txt is rendered too (so its errors fail the run) and written to -notes, or to stderr.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"text/template"

	"github.com/Masterminds/sprig"
	"gopkg.in/yaml.v2"
)

const kubeVersion = "v1.37.0"

type valueFiles []string

func (v *valueFiles) String() string     { return strings.Join(*v, ",") }
func (v *valueFiles) Set(s string) error { *v = append(*v, s); return nil }

// apiVersions is .Capabilities.APIVersions: every API version is taken as served.
type apiVersions struct{}

func (apiVersions) Has(string) bool { return true }

func main() {
	name := flag.String("name", "release", "release name")
	namespace := flag.String("namespace", "default", "release namespace")
	notesPath := flag.String("notes", "", "write the rendered NOTES.txt here (default: stderr)")
	includeCRDs := flag.Bool("include-crds", false, "print the chart's crds/ files first, like helm --include-crds")
	var userValues valueFiles
	flag.Var(&userValues, "f", "values file, may repeat; later files win")
	flag.Parse()
	if flag.NArg() != 1 {
		fail(errors.New("usage: helm_render [flags] CHART_DIR"))
	}
	if err := run(flag.Arg(0), *name, *namespace, userValues, *notesPath, *includeCRDs); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "Error:", err)
	os.Exit(1)
}

func run(chartDir, name, namespace string, userValues []string, notesPath string, includeCRDs bool) error {
	chart, err := loadChart(chartDir)
	if err != nil {
		return err
	}
	values, err := readYAMLMap(filepath.Join(chartDir, "values.yaml"))
	if err != nil {
		return err
	}
	for _, file := range userValues {
		user, err := readYAMLMap(file)
		if err != nil {
			return err
		}
		values = coalesce(values, user)
	}
	chartName := fmt.Sprint(chart["Name"])
	templates, err := parseTemplates(chartDir, chartName)
	if err != nil {
		return err
	}
	top := map[string]interface{}{
		"Values":  values,
		"Chart":   chart,
		"Release": map[string]interface{}{"Name": name, "Namespace": namespace, "Service": "Helm", "IsInstall": true, "IsUpgrade": false, "Revision": 1},
		"Capabilities": map[string]interface{}{
			"KubeVersion": map[string]interface{}{"Version": kubeVersion, "GitVersion": kubeVersion, "Major": "1", "Minor": "37"},
			"APIVersions": apiVersions{},
		},
	}
	out := &bytes.Buffer{}
	if includeCRDs {
		if err := writeCRDs(out, chartDir, chartName); err != nil {
			return err
		}
	}
	notesName := chartName + "/templates/NOTES.txt"
	for _, name := range manifestNames(templates, chartName, notesName) {
		text, err := execute(templates, name, top)
		if err != nil {
			return err
		}
		if strings.TrimSpace(text) != "" {
			fmt.Fprintf(out, "---\n# Source: %s\n%s\n", name, strings.TrimRight(text, "\n"))
		}
	}
	if templates.Lookup(notesName) != nil {
		notes, err := execute(templates, notesName, top)
		if err != nil {
			return err
		}
		if notesPath == "" {
			fmt.Fprint(os.Stderr, "NOTES:\n"+notes)
		} else if err := os.WriteFile(notesPath, []byte(notes), 0o644); err != nil {
			return err
		}
	}
	_, err = os.Stdout.Write(out.Bytes())
	return err
}

// manifestNames lists the files to render, sorted: not partials (_*.tpl), not NOTES.txt.
func manifestNames(templates *template.Template, chartName, notesName string) []string {
	var names []string
	for _, tpl := range templates.Templates() {
		name := tpl.Name()
		if strings.HasPrefix(name, chartName+"/templates/") && name != notesName && !strings.HasPrefix(path.Base(name), "_") {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	return names
}

// execute renders one template with .Template set for it, like Helm (missing keys render as "").
func execute(templates *template.Template, name string, top map[string]interface{}) (string, error) {
	data := map[string]interface{}{"Template": map[string]interface{}{"Name": name, "BasePath": path.Dir(name)}}
	for key, value := range top {
		data[key] = value
	}
	var buf bytes.Buffer
	if err := templates.ExecuteTemplate(&buf, name, data); err != nil {
		return "", cleanupExecError(name, err)
	}
	return strings.ReplaceAll(buf.String(), "<no value>", ""), nil
}

var (
	userFailure  = regexp.MustCompile(`error calling (?:required|fail): (.*)$`)
	failLocation = regexp.MustCompile(`template: ([^:\s]+:\d+:\d+): executing`)
)

// cleanupExecError shortens a `required`/`fail` error to Helm's "execution error at (file:line:col): message".
func cleanupExecError(name string, err error) error {
	message := userFailure.FindStringSubmatch(err.Error())
	if message == nil {
		return fmt.Errorf("rendering %s: %w", name, err)
	}
	locations := failLocation.FindAllStringSubmatch(err.Error(), -1)
	location := name
	if len(locations) > 0 {
		location = locations[len(locations)-1][1]
	}
	return fmt.Errorf("execution error at (%s): %s", location, message[1])
}

// parseTemplates parses every file under templates/ into one set, named "<chart>/templates/<path>".
func parseTemplates(chartDir, chartName string) (*template.Template, error) {
	root := template.New(chartName).Option("missingkey=zero")
	root.Funcs(funcMap(root))
	dir := filepath.Join(chartDir, "templates")
	files, err := listFiles(dir)
	if err != nil {
		return nil, err
	}
	for _, rel := range files {
		content, err := os.ReadFile(filepath.Join(dir, rel))
		if err != nil {
			return nil, err
		}
		name := chartName + "/templates/" + filepath.ToSlash(rel)
		if _, err := root.New(name).Parse(string(content)); err != nil {
			return nil, fmt.Errorf("parsing %s: %w", name, err)
		}
	}
	return root, nil
}

func listFiles(dir string) ([]string, error) {
	var files []string
	err := filepath.WalkDir(dir, func(p string, entry fs.DirEntry, err error) error {
		if err != nil || entry.IsDir() {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		files = append(files, rel)
		return err
	})
	sort.Strings(files)
	return files, err
}

func writeCRDs(out *bytes.Buffer, chartDir, chartName string) error {
	dir := filepath.Join(chartDir, "crds")
	files, err := listFiles(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, rel := range files {
		content, err := os.ReadFile(filepath.Join(dir, rel))
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "---\n# Source: %s/crds/%s\n%s\n", chartName, filepath.ToSlash(rel), strings.TrimRight(string(content), "\n"))
	}
	return nil
}

// funcMap is sprig's plus the functions Helm adds; like Helm, it drops sprig's env and expandenv.
func funcMap(root *template.Template) template.FuncMap {
	funcs := sprig.TxtFuncMap()
	delete(funcs, "env")
	delete(funcs, "expandenv")
	depth := 0
	funcs["include"] = func(name string, data interface{}) (string, error) {
		if depth++; depth > 1000 {
			return "", fmt.Errorf("include %q: too deeply nested (recursive template?)", name)
		}
		defer func() { depth-- }()
		var buf bytes.Buffer
		err := root.ExecuteTemplate(&buf, name, data)
		return buf.String(), err
	}
	funcs["tpl"] = func(text string, data interface{}) (string, error) {
		clone, err := root.Clone()
		if err != nil {
			return "", err
		}
		tpl, err := clone.New("tpl").Parse(text)
		if err != nil {
			return "", err
		}
		var buf bytes.Buffer
		err = tpl.Execute(&buf, data)
		return strings.ReplaceAll(buf.String(), "<no value>", ""), err
	}
	funcs["required"] = func(message string, value interface{}) (interface{}, error) {
		if value == nil {
			return nil, errors.New(message)
		}
		if text, ok := value.(string); ok && text == "" {
			return nil, errors.New(message)
		}
		return value, nil
	}
	funcs["toYaml"] = toYAML
	funcs["fromYaml"] = func(text string) map[string]interface{} {
		values, err := parseYAMLMap([]byte(text))
		if err != nil {
			return map[string]interface{}{"Error": err.Error()}
		}
		return values
	}
	funcs["lookup"] = func(apiVersion, kind, namespace, name string) (map[string]interface{}, error) {
		return map[string]interface{}{}, nil // as `helm template`: there is no cluster to ask
	}
	return funcs
}

// toYAML is Helm's toYaml: through JSON first (sorted keys, JSON field names), no trailing newline.
func toYAML(value interface{}) string {
	data, err := json.Marshal(value)
	if err != nil {
		return ""
	}
	var generic interface{}
	if err := yaml.Unmarshal(data, &generic); err != nil {
		return ""
	}
	out, err := yaml.Marshal(generic)
	if err != nil {
		return ""
	}
	return strings.TrimSuffix(string(out), "\n")
}

func readYAMLMap(file string) (map[string]interface{}, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	values, err := parseYAMLMap(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return values, nil
}

// parseYAMLMap reads YAML as Helm does (sigs.k8s.io/yaml): through JSON, so numbers become float64.
func parseYAMLMap(data []byte) (map[string]interface{}, error) {
	var raw interface{}
	if err := yaml.Unmarshal(data, &raw); err != nil {
		return nil, err
	}
	asJSON, err := json.Marshal(stringKeys(raw))
	if err != nil {
		return nil, err
	}
	values := map[string]interface{}{}
	if string(asJSON) == "null" {
		return values, nil
	}
	if err := json.Unmarshal(asJSON, &values); err != nil {
		return nil, fmt.Errorf("not a mapping: %w", err)
	}
	return values, nil
}

func stringKeys(value interface{}) interface{} {
	switch v := value.(type) {
	case map[interface{}]interface{}:
		out := make(map[string]interface{}, len(v))
		for key, item := range v {
			out[fmt.Sprint(key)] = stringKeys(item)
		}
		return out
	case []interface{}:
		out := make([]interface{}, len(v))
		for i, item := range v {
			out[i] = stringKeys(item)
		}
		return out
	}
	return value
}

// coalesce merges user values over the chart's: maps deeply, anything else replaced; null deletes a key.
func coalesce(base, user map[string]interface{}) map[string]interface{} {
	out := make(map[string]interface{}, len(base))
	for key, value := range base {
		out[key] = value
	}
	for key, value := range user {
		if value == nil {
			delete(out, key)
			continue
		}
		baseMap, baseIsMap := out[key].(map[string]interface{})
		userMap, userIsMap := value.(map[string]interface{})
		if baseIsMap && userIsMap {
			out[key] = coalesce(baseMap, userMap)
		} else {
			out[key] = value
		}
	}
	return out
}

// loadChart reads Chart.yaml with Helm's capitalised field names (.Chart.Name, .Chart.AppVersion...).
func loadChart(chartDir string) (map[string]interface{}, error) {
	meta, err := readYAMLMap(filepath.Join(chartDir, "Chart.yaml"))
	if err != nil {
		return nil, err
	}
	chart := map[string]interface{}{}
	for key, value := range meta {
		if key == "apiVersion" {
			chart["APIVersion"] = value
		} else if key != "" {
			chart[strings.ToUpper(key[:1])+key[1:]] = value
		}
	}
	if chart["Name"] == nil || chart["Version"] == nil {
		return nil, errors.New("Chart.yaml needs name and version")
	}
	return chart, nil
}
