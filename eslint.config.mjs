// One flat config for the whole workspace. Type-aware rules are errors and CI runs with
// --max-warnings=0. Module boundaries between apps and libs are enforced through Nx project tags.
import js from '@eslint/js';
import nx from '@nx/eslint-plugin';
import reactHooks from 'eslint-plugin-react-hooks';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  {
    ignores: [
      '**/node_modules/**',
      '**/dist/**',
      '**/*.js',
      '**/*.cjs',
      '**/*.mjs',
      // …except this file, linted without type information (no tsconfig includes it).
      '!eslint.config.mjs',
      '**/*.mts',
      'e2e/k8s/node/**',
      'e2e/k8s/tools/**',
      'charts/**',
      'docker/**',
    ],
  },
  js.configs.recommended,
  ...tseslint.configs.strictTypeChecked,
  {
    languageOptions: {
      parserOptions: {
        projectService: { allowDefaultProject: ['*.ts'] },
        tsconfigRootDir: import.meta.dirname,
      },
    },
    plugins: { '@nx': nx },
    linterOptions: { reportUnusedDisableDirectives: 'error' },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/switch-exhaustiveness-check': [
        'error',
        { considerDefaultExhaustiveForUnions: true, requireDefaultForNonUnion: false },
      ],
      '@typescript-eslint/consistent-type-imports': 'off',
      '@typescript-eslint/restrict-template-expressions': [
        'error',
        { allowNumber: true, allowBoolean: true },
      ],
      '@typescript-eslint/no-extraneous-class': ['error', { allowWithDecorator: true }],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-console': 'error',
      // Flags every options object passed to a NestJS API typed as a class; not a real hazard here.
      '@typescript-eslint/no-unsafe-class-instance-assignment': 'off',
      '@nx/enforce-module-boundaries': [
        'error',
        {
          enforceBuildableLibDependency: false,
          allow: [],
          depConstraints: [
            // Libraries never import apps.
            { sourceTag: 'type:lib', onlyDependOnLibsWithTags: ['type:lib'] },
            // Apps import libs, never other apps.
            { sourceTag: 'type:app', onlyDependOnLibsWithTags: ['type:lib'] },
            // The browser bundle may only use isomorphic code.
            { sourceTag: 'platform:browser', onlyDependOnLibsWithTags: ['platform:isomorphic'] },
            { sourceTag: 'platform:isomorphic', onlyDependOnLibsWithTags: ['platform:isomorphic'] },
            // The agent runs on managed clusters and must never carry server code.
            { sourceTag: 'scope:agent', notDependOnLibsWithTags: ['scope:server'] },
            { sourceTag: 'type:e2e', onlyDependOnLibsWithTags: ['type:lib', 'type:app'] },
          ],
        },
      ],
    },
  },
  {
    // The isomorphic lib compiles without Node types; its tests run on Node and have their own project.
    files: ['libs/protocol/src/**/*.spec.ts'],
    languageOptions: {
      parserOptions: {
        projectService: false,
        project: ['libs/protocol/tsconfig.spec.json'],
        tsconfigRootDir: import.meta.dirname,
      },
    },
  },
  {
    files: ['eslint.config.mjs'],
    ...tseslint.configs.disableTypeChecked,
  },
  {
    // The web app: the Rules of React (hooks and the React Compiler's checks), warnings included.
    files: ['apps/web/src/**/*.ts', 'apps/web/src/**/*.tsx'],
    ...reactHooks.configs.flat.recommended,
  },
  {
    // Command-line programs and test harnesses talk to a terminal on purpose.
    files: ['apps/shell/src/**/*.ts', 'e2e/**/*.ts', 'scripts/**/*.ts'],
    rules: { 'no-console': 'off' },
  },
  {
    // End-to-end tests drive the apps from outside and may reach into them (never the reverse).
    files: ['e2e/**/*.ts'],
    rules: { '@nx/enforce-module-boundaries': 'off' },
  },
  {
    files: ['**/*.spec.ts', '**/*.test.ts', 'e2e/**/*.ts'],
    rules: {
      '@typescript-eslint/no-non-null-assertion': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-assignment': 'off',
    },
  },
);
