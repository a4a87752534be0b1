// Type-aware linting: the rules that catch real bugs in async queue code (floating promises,
// misused promises) are on; formatting is Prettier's job.
import js from "@eslint/js";
import tseslint from "typescript-eslint";

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
