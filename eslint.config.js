// Type-aware linting: the rules that catch real bugs in async queue code (floating promises,
// misused promises) are on; formatting is Prettier's job.
import js from "@eslint/js";
import tseslint from "typescript-eslint";

/**
 * One config object per folder: `no-restricted-imports` for static imports and re-exports, and
 * `no-restricted-syntax` for `import()` (which that rule does not see). Specifiers are matched as
 * written, so a relative path climbing into a forbidden top-level folder is what is refused.
 * @param {Record<string, string[]>} rules files glob → top-level folders those files may not import
 */
function seams(rules) {
  return Object.entries(rules).map(([files, forbidden]) => {
    const folders = forbidden.join("|");
    const folder = files.replace("/**", "");
    const message = `${folder}/ may not import ${forbidden.map((f) => `${f}/`).join(", ")}: see ${folder}/README.md (shared contracts live in jobs/ or core/).`;
    return {
      files: [files],
      ignores: ["**/*.test.ts", "**/*.test-support.ts"],
      rules: {
        "no-restricted-imports": ["error", { patterns: [{ regex: `^(\\.\\./)+(${folders})(/|$)`, message }] }],
        "no-restricted-syntax": ["error", { selector: `ImportExpression[source.value=/^(\\.\\.\\/)+(${folders})(\\/|$)/]`, message }],
      },
    };
  });
}

export const config = tseslint.config(
  { ignores: ["node_modules/**", ".engine/**", ".build/**", ".stackrail/**", "coverage/**"] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: { parserOptions: { projectService: { allowDefaultProject: ["*.js"] }, tsconfigRootDir: import.meta.dirname } },
    rules: {
      "@typescript-eslint/no-floating-promises": "error",
      "@typescript-eslint/no-misused-promises": "error",
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_" }],
    },
  },
  // The console's browser script is plain JavaScript served as is (no build step): linted without
  // type information, as an ES module.
  {
    files: ["webhooks/console/**/*.js"],
    ...tseslint.configs.disableTypeChecked,
    // eslint-disable-next-line @typescript-eslint/no-unsafe-assignment -- typescript-eslint's own config object
    languageOptions: { ...tseslint.configs.disableTypeChecked.languageOptions, sourceType: "module" },
  },
  // The seams between folders (each folder's README says what it owns and may import): the edge
  // (webhooks/, cli/) and the worker meet only in jobs/ and core/, so either side can change, or
  // run alone, without reaching into the other. Tests may import whatever they test.
  ...seams({
    "webhooks/**": ["worker"],
    "cli/**": ["worker", "webhooks", "jobs", "programs"],
    "worker/**": ["webhooks"],
    "jobs/**": ["worker", "webhooks", "programs", "cli"],
    "core/**": ["worker", "webhooks", "jobs", "programs", "cli"],
    "programs/**": ["worker", "webhooks", "jobs", "cli"],
  }),
  {
    // Tests read JSON answers of the service they drive; typing every body would add noise, not safety.
    files: ["**/*.test.ts", "test/**/*.ts", "bench/**/*.ts", "**/*.test-support.ts", "scripts/demo.ts"],
    rules: {
      "@typescript-eslint/no-explicit-any": "off",
      "@typescript-eslint/no-unsafe-argument": "off",
      "@typescript-eslint/no-unsafe-assignment": "off",
      "@typescript-eslint/no-unsafe-member-access": "off",
      "@typescript-eslint/no-unsafe-return": "off",
      "@typescript-eslint/no-unsafe-call": "off",
      "preserve-caught-error": "off",
    },
  },
);

// ESLint's flat config loader requires a default export from this one file.
export default config;
